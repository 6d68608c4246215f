// A trace collector stand-in for the benchmark: accepts OTLP/HTTP export requests on loopback
// and answers 200 with an empty ExportTraceServiceResponse (zero bytes is its protobuf form),
// so toolgate's exporter does all of its work and nothing else is measured.
// With "stall" it reads each request and never answers: a collector that hangs.
//   node otlp-sink.mjs PORT [stall]
import http from "node:http";

const port = Number(process.argv[2]);
const stall = process.argv[3] === "stall";
let requests = 0;
let bytes = 0;
const server = http.createServer((req, res) => {
    req.on("data", (c) => (bytes += c.length));
    req.on("end", () => {
        requests++;
        if (stall) return;
        res.writeHead(req.method === "POST" && req.url === "/v1/traces" ? 200 : 404, {
            "Content-Type": "application/x-protobuf",
            "Content-Length": 0,
        });
        res.end();
    });
});
server.keepAliveTimeout = 60000;
server.listen(port, "127.0.0.1");
const stop = () => {
    process.stderr.write(`otlp-sink: ${requests} export requests, ${bytes} bytes\n`);
    process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
