// Packaging: the manual page made from the --help texts covers every command; `make install`
// and `make uninstall` put files where the FHS says and leave the operator's; `make deb` makes
// a package whose contents are what docs/operations.md says, that Debian's lintian passes
// without errors, that dpkg installs (into overlays, as root), and whose binary runs from a
// scratch root and accepts the shipped example configuration; the systemd unit verifies; the
// container recipe is consistent with the tree.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { REPO_DIR, TOOLGATE_BIN } from "./lib/harness.mjs";

const BUILD = path.relative(REPO_DIR, path.dirname(TOOLGATE_BIN)) || ".";
const VERSION = readFileSync(path.join(REPO_DIR, "VERSION"), "utf8").trim();
const scratch = mkdtempSync(path.join(os.tmpdir(), "toolgate-pkg-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

function run(cmd, args, opts = {}) {
    const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 120000, maxBuffer: 64 << 20, ...opts });
    if (r.error) throw r.error;
    return r;
}
function ok(cmd, args, opts) {
    const r = run(cmd, args, opts);
    assert.equal(r.status, 0, `${cmd} ${args.join(" ")}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
    return r.stdout;
}
const have = (cmd) => run("sh", ["-c", `command -v ${cmd}`]).status === 0;
// make against the binary under test: -o keeps make from rebuilding it (with other flags).
const make = (...args) =>
    ok("make", ["--no-print-directory", "-C", REPO_DIR, `BUILD=${BUILD}`, "-o", `${BUILD}/toolgate`, ...args]);

// The commands `toolgate --help` lists: lines "  NAME ..." in its "commands:" block.
function helpCommands(helpText) {
    const lines = helpText.split("\n");
    const start = lines.findIndex((l) => /^commands:/.test(l));
    assert.ok(start >= 0, "toolgate --help has a commands: block");
    return lines
        .slice(start + 1)
        .map((l) => /^ {2}([a-z][a-z-]*)\b/.exec(l))
        .filter(Boolean)
        .map((m) => m[1]);
}
// The commands a manual page has a section for, and those of `commands` it lacks.
const manSections = (page) => [...page.matchAll(/^\.SS "toolgate ([a-z-]+)"$/gm)].map((m) => m[1]);
const missingFrom = (page, commands) => commands.filter((c) => !manSections(page).includes(c));

let page;
before(() => {
    /*
     * Made afresh from the binary under test: `make` is told to take the binary as it is
     * (-o), which also keeps it from remaking a page older than the binary.
     */
    rmSync(path.join(REPO_DIR, BUILD, "man", "toolgate.1"), { force: true });
    make("man");
    page = readFileSync(path.join(REPO_DIR, BUILD, "man", "toolgate.1"), "utf8");
});

test("the manual page has a section for every command of toolgate --help, with its --help text", () => {
    const commands = helpCommands(ok(TOOLGATE_BIN, ["--help"]));
    assert.ok(commands.length >= 9, `commands found: ${commands}`);
    assert.deepEqual(missingFrom(page, commands), []);
    // The check itself notices a command without a section.
    const without = page.replace(/^\.SS "toolgate audit"$/m, "");
    assert.deepEqual(missingFrom(without, commands), ["audit"]);
    const roff = (t) => t.replace(/\\/g, "\\e").replace(/-/g, "\\-").replace(/'/g, "\\(aq").replace(/`/g, "\\(ga");
    let subsections = 0;
    for (const c of commands) {
        // Each section carries the command's own help, every line, as roff (hyphens escaped).
        const own = ok(TOOLGATE_BIN, [c, "--help"]);
        const section = page.split(`.SS "toolgate ${c}"\n`)[1].split("\n.SS ")[0];
        for (const line of own.split("\n").filter((l) => l.trim()))
            assert.ok(section.includes(`\n${roff(line)}\n`), `the section of ${c} has "${line}"`);
        // And the help of each subcommand its usage names (toolgate c a|b), where that says more.
        const subs = new Set([...own.matchAll(new RegExp(`toolgate ${c} ([a-z][a-z|-]*)`, "g"))].flatMap((m) => m[1].split("|")));
        for (const sub of subs) {
            const r = run(TOOLGATE_BIN, [c, sub, "--help"]);
            if (r.status !== 0 || r.stdout.trimEnd() === own.trimEnd()) continue;
            assert.ok(page.includes(`.B "toolgate ${c} ${sub}"\n`), `the page has toolgate ${c} ${sub}`);
            assert.ok(page.includes(roff(r.stdout.split("\n")[0])), `toolgate ${c} ${sub}: its usage`);
            subsections++;
        }
    }
    assert.ok(subsections >= 6, `the bench layers have their own help (${subsections} subsections)`);
    assert.match(page, /^\.TH TOOLGATE 1 "\d{4}-\d\d-\d\d" "toolgate [0-9.]+" "User Commands"$/m);
});

test("the manual page is roff that groff, man and lexgrog accept", () => {
    const file = path.join(REPO_DIR, BUILD, "man", "toolgate.1");
    const env = { ...process.env, LC_ALL: "C.UTF-8", MANWIDTH: "80" };
    const groff = run("groff", ["-man", "-ww", "-z", "-Tutf8", file], { env });
    assert.equal(groff.status, 0);
    assert.equal(groff.stderr, "", "groff warns about nothing");
    const man = run("man", ["--warnings", "-l", file], { env });
    assert.equal(man.status, 0);
    assert.equal(man.stderr, "", "man warns about nothing");
    assert.match(man.stdout, /^COMMANDS$/m);
    assert.match(man.stdout, /toolgate serve/);
    assert.match(ok("lexgrog", [file]), /: "toolgate - a control plane for LLM tool calls/);
});

test("make install puts files where the FHS says; uninstall takes them and keeps a changed config", () => {
    const dest = path.join(scratch, "dest");
    make("install", "PREFIX=/usr/local", `DESTDIR=${dest}`);
    const at = (p) => path.join(dest, p);
    for (const f of [
        "usr/local/bin/toolgate",
        "usr/local/share/man/man1/toolgate.1",
        "usr/local/share/doc/toolgate/configuration.md",
        "usr/local/share/doc/toolgate/examples/toolgate.yaml",
        "usr/local/etc/toolgate/toolgate.yaml",
        "usr/local/lib/systemd/system/toolgate.service",
    ])
        assert.ok(existsSync(at(f)), `${f} installed`);
    const unit = readFileSync(at("usr/local/lib/systemd/system/toolgate.service"), "utf8");
    assert.match(unit, /^ExecStart=\/usr\/local\/bin\/toolgate serve --config \/usr\/local\/etc\/toolgate\/toolgate\.yaml$/m);
    // An operator's configuration is never overwritten, nor removed.
    const conf = at("usr/local/etc/toolgate/toolgate.yaml");
    writeFileSync(conf, "server: {}\n");
    make("install", "PREFIX=/usr/local", `DESTDIR=${dest}`);
    assert.equal(readFileSync(conf, "utf8"), "server: {}\n");
    make("uninstall", "PREFIX=/usr/local", `DESTDIR=${dest}`);
    for (const f of ["usr/local/bin/toolgate", "usr/local/share/man/man1/toolgate.1",
        "usr/local/share/doc/toolgate", "usr/local/lib/systemd/system/toolgate.service"])
        assert.ok(!existsSync(at(f)), `${f} removed`);
    assert.equal(readFileSync(conf, "utf8"), "server: {}\n");
    // Under /usr: the configuration in /etc, the unit in /lib/systemd/system.
    const usr = path.join(scratch, "usr");
    make("install", "PREFIX=/usr", `DESTDIR=${usr}`);
    assert.ok(existsSync(path.join(usr, "etc/toolgate/toolgate.yaml")));
    assert.match(readFileSync(path.join(usr, "lib/systemd/system/toolgate.service"), "utf8"),
        /^ExecStart=\/usr\/bin\/toolgate serve --config \/etc\/toolgate\/toolgate\.yaml$/m);
    make("uninstall", "PREFIX=/usr", `DESTDIR=${usr}`);
    assert.ok(!existsSync(path.join(usr, "etc/toolgate/toolgate.yaml")), "the unchanged example goes");
});

// The rows of the package's file table in docs/operations.md: `path` cells, globs allowed.
function documentedFiles() {
    const ops = readFileSync(path.join(REPO_DIR, "docs", "operations.md"), "utf8");
    const section = /^### The Debian package$([\s\S]*?)^#{2,3} /m.exec(ops);
    assert.ok(section, "docs/operations.md has a section \"The Debian package\"");
    const rows = section[1].split("\n").filter((l) => /^\| `\//.test(l));
    assert.ok(rows.length > 0, "the section has a table of files");
    return rows.flatMap((r) => [...r.split("|")[1].matchAll(/`([^`]+)`/g)].map((m) => m[1]));
}
const globRe = (g) => new RegExp("^" + g.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*") + "$");

// The package, made once by `make deb` and unpacked (files and control area) into scratch.
let made;
function pkg() {
    if (made) return made;
    const out = make("deb").trim().split("\n").pop();
    const arch = ok("dpkg", ["--print-architecture"]).trim();
    const deb = path.join(REPO_DIR, BUILD, `toolgate_${VERSION}-1_${arch}.deb`);
    const root = path.join(scratch, "root");
    const control = path.join(scratch, "DEBIAN");
    ok("dpkg-deb", ["-x", deb, root]);
    ok("dpkg-deb", ["-e", deb, control]);
    made = { out, arch, deb, root, control };
    return made;
}

test("make deb: contents as documented, lintian without errors, the binary runs from a scratch root", () => {
    const { out, arch, deb, root, control } = pkg();
    assert.equal(path.resolve(out), deb, "make deb names the package it made");

    // Control: name, version, computed Depends, conffiles, maintainer scripts, md5sums.
    const field = (f) => ok("dpkg-deb", ["-f", deb, f]).trim();
    assert.equal(field("Package"), "toolgate");
    assert.equal(field("Version"), `${VERSION}-1`);
    assert.equal(field("Architecture"), arch);
    const depends = field("Depends").split(/,\s*/).map((d) => d.split(" ")[0]);
    for (const lib of ["libc6", "libssl3", "libcurl4", "libuv1", "libjansson4", "adduser"])
        assert.ok(depends.includes(lib), `Depends names ${lib}: ${depends}`);
    const info = ok("dpkg-deb", ["-I", deb]);
    for (const member of ["control", "conffiles", "md5sums", "postinst", "prerm", "postrm"])
        assert.match(info, new RegExp(`\\s${member}\\s`), `control archive has ${member}`);
    assert.equal(readFileSync(path.join(control, "conffiles"), "utf8"), "/etc/toolgate/toolgate.yaml\n");
    assert.match(readFileSync(path.join(control, "postinst"), "utf8"), /adduser --system --group/);

    // Files: exactly the documented ones, owned by root.
    const listing = ok("dpkg-deb", ["-c", deb]).trim().split("\n");
    const files = listing.filter((l) => l.startsWith("-")).map((l) => l.split(/\s+/).pop().replace(/^\./, ""));
    assert.ok(listing.every((l) => l.split(/\s+/)[1] === "root/root"), "every entry is root's");
    const documented = documentedFiles();
    for (const f of files)
        assert.ok(documented.some((g) => globRe(g).test(f)), `${f} is in docs/operations.md`);
    for (const g of documented)
        assert.ok(files.some((f) => globRe(g).test(f)), `${g} (docs/operations.md) is in the package`);

    // apt can install it here, on Debian 12: every Depends resolves (a simulation; no lock).
    const apt = run("apt-get", ["install", "-s", "-o", "Debug::NoLocking=1", deb]);
    assert.equal(apt.status, 0, apt.stdout + apt.stderr);
    assert.match(apt.stdout, /^Inst toolgate \(/m);

    // Debian's own checker: no errors.
    const lintian = run("lintian", ["--fail-on", "error", deb]);
    assert.doesNotMatch(lintian.stdout, /^E: /m, lintian.stdout);
    assert.equal(lintian.status, 0, `lintian: exit ${lintian.status}\n${lintian.stdout}${lintian.stderr}`);

    // Unpacked into a scratch root: sums match, binary stripped, it runs, the example checks.
    ok("md5sum", ["--quiet", "-c", path.join(control, "md5sums")], { cwd: root });
    const bin = path.join(root, "usr/bin/toolgate");
    const sections = ok("readelf", ["-S", "-W", bin]);
    assert.doesNotMatch(sections, /\.symtab|\.debug_/, "the binary is stripped");
    assert.match(ok(bin, ["--help"]), /^commands:$/m);
    assert.match(ok(bin, ["--version"]), new RegExp(`^toolgate ${VERSION.replace(/\./g, "\\.")} `));
    const conf = path.join(root, "etc/toolgate/toolgate.yaml");
    assert.match(ok(bin, ["check", "--config", conf]), /: ok \(/);
    // The container's configuration: the same, listening on every interface (as the image's
    // Dockerfile rewrites it).
    const inContainer = path.join(scratch, "container.yaml");
    const example = readFileSync(conf, "utf8");
    assert.match(example, /^ {2}listen: \["127\.0\.0\.1:8080"\]$/m, "the line the Dockerfile rewrites");
    writeFileSync(inContainer, example.replace(/^ {2}listen: \["127\.0\.0\.1:8080"\]$/m, '  listen: ["0.0.0.0:8080"]'));
    assert.match(ok(bin, ["check", "--config", inContainer]), /: ok \(/);
    const man = run("man", ["-l", path.join(root, "usr/share/man/man1/toolgate.1.gz")], {
        env: { ...process.env, LC_ALL: "C.UTF-8" },
    });
    assert.equal(man.status, 0);
    assert.match(man.stdout, /toolgate audit/);
    assert.deepEqual(readdirSync(path.join(root, "usr/share/doc/toolgate")).filter((f) => f === "copyright"), ["copyright"]);
    assert.match(readFileSync(path.join(root, "usr/share/doc/toolgate/copyright"), "utf8"),
        /^Format: https:\/\/www\.debian\.org\/doc\/packaging-manuals\/copyright-format\/1\.0\/$/m);
});

// A real installation: dpkg -i into overlays of /etc, /usr and /var in a mount namespace of
// its own, so the host's files and package database stay as they were.
test("dpkg installs the package (user, state directory, conffile), the user can run check, purge", (t) => {
    if (process.getuid() !== 0 || run("unshare", ["-m", "true"]).status !== 0) {
        t.skip("needs root and mount namespaces (unshare -m)");
        return;
    }
    const { deb } = pkg();
    const ov = path.join(scratch, "overlay");
    const script = `set -e
for d in etc usr var; do
    mkdir -p "${ov}/$d.up" "${ov}/$d.work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=${ov}/$d.up,workdir=${ov}/$d.work" "/$d"
done
dpkg -i "${deb}" >/dev/null
echo "status: $(dpkg-query -W -f='\${Status}' toolgate)"
echo "user: $(getent passwd toolgate | cut -d: -f1,6,7)"
echo "state: $(stat -c '%U:%G %a' /var/lib/toolgate)"
cd /var/lib/toolgate
setpriv --reuid=toolgate --regid=toolgate --init-groups /usr/bin/toolgate check --config /etc/toolgate/toolgate.yaml
echo "man: $(man -w toolgate)"
dpkg --purge toolgate >/dev/null
echo "purged: $(dpkg-query -W -f='\${Status}' toolgate 2>/dev/null || echo gone) $(test -e /usr/bin/toolgate && echo binary-left || echo binary-gone) $(test -d /var/lib/toolgate && echo state-kept)"
`;
    const r = run("unshare", ["-m", "--propagation", "private", "sh", "-c", script]);
    if (r.status !== 0 && /overlay|mount/.test(r.stderr) && !/dpkg/.test(r.stderr)) {
        t.skip(`overlay mounts are not available here: ${r.stderr.trim()}`);
        return;
    }
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^status: install ok installed$/m);
    assert.match(r.stdout, /^user: toolgate:\/var\/lib\/toolgate:\/usr\/sbin\/nologin$/m);
    assert.match(r.stdout, /^state: toolgate:toolgate 750$/m);
    assert.match(r.stdout, /^\/etc\/toolgate\/toolgate\.yaml: ok \(/m);
    assert.match(r.stdout, /^man: \/usr\/share\/man\/man1\/toolgate\.1\.gz$/m);
    assert.match(r.stdout, /^purged: .*binary-gone state-kept$/m);
    assert.ok(!existsSync("/usr/bin/toolgate") || run("dpkg-query", ["-W", "toolgate"]).status !== 0,
        "the host has no toolgate package afterwards");
});

test("the packaged systemd unit is hardened and systemd-analyze verify finds nothing wrong", (t) => {
    const { root } = pkg();
    const unitFile = path.join(root, "lib/systemd/system/toolgate.service");
    const unit = readFileSync(unitFile, "utf8");
    for (const line of [
        "User=toolgate", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
        "PrivateTmp=yes", "CapabilityBoundingSet=", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service", "StateDirectory=toolgate", "ReadWritePaths=/var/lib/toolgate",
        "LimitNOFILE=65536", "ExecReload=/bin/kill -HUP $MAINPID",
    ])
        assert.ok(unit.split("\n").includes(line), `the unit has ${line}`);
    if (!have("systemd-analyze")) {
        t.skip("systemd-analyze is not installed");
        return;
    }
    // Verified with its commands pointing into the scratch root (which has no /usr/bin here),
    // and the manual page of Documentation= found there.
    const copy = path.join(scratch, "toolgate.service");
    writeFileSync(copy, unit.replaceAll("/usr/bin/toolgate", `${root}/usr/bin/toolgate`));
    const r = run("systemd-analyze", ["verify", copy], {
        env: { ...process.env, MANPATH: path.join(root, "usr/share/man") },
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.equal(r.stderr, "", "systemd-analyze verify says nothing");
    // The same check notices a setting systemd does not understand.
    writeFileSync(copy, readFileSync(copy, "utf8").replace("ProtectSystem=strict", "ProtectSystem=bogus"));
    const bad = run("systemd-analyze", ["verify", copy], {
        env: { ...process.env, MANPATH: path.join(root, "usr/share/man") },
    });
    assert.match(bad.stderr, /ProtectSystem|protect system/i, "a bad value is reported");
    // The exposure rating is the one docs/operations.md gives, and 2.0 or better (0 is best).
    const sec = run("systemd-analyze", ["security", "--offline=yes", "--threshold=20", `--root=${root}`, unitFile]);
    assert.equal(sec.status, 0, sec.stdout + sec.stderr);
    const rated = /Overall exposure level for toolgate\.service: ([0-9.]+) /.exec(sec.stdout);
    const documented = /rates it\s+\*\*([0-9.]+) OK\*\*/.exec(readFileSync(path.join(REPO_DIR, "docs/operations.md"), "utf8"));
    assert.ok(rated && documented, "a rating, and the rating in docs/operations.md");
    assert.equal(rated[1], documented[1], "docs/operations.md gives the unit's rating");
});

test("the container recipe copies what exists, runs as the package's user and checks /healthz", () => {
    const dockerfile = readFileSync(path.join(REPO_DIR, "examples/container/Dockerfile"), "utf8");
    const stages = dockerfile.split(/^FROM /m).slice(1);
    assert.equal(stages.length, 2, "two stages: build, runtime");
    assert.match(stages[0], /^debian:12 AS build\n/);
    assert.match(stages[1], /^debian:12-slim\n/);
    assert.match(stages[0], /\bmake deb\b/);
    for (const m of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm))
        for (const src of m[1].split(/\s+/))
            assert.ok(existsSync(path.join(REPO_DIR, src)), `COPY ${src}: exists in the tree`);
    assert.match(stages[1], /^RUN apt-get update[\s\S]*\/tmp\/toolgate_\*\.deb/m, "the runtime installs the package");
    assert.match(stages[1], /^USER toolgate:toolgate$/m);
    assert.ok(stages[1].includes(`sed -i 's|^  listen: \\["127.0.0.1:8080"\\]$|  listen: ["0.0.0.0:8080"]|' /etc/toolgate/toolgate.yaml`),
        "the image listens on every interface");
    const admin = /^admin:\n {2}listen: "([^"]+)"$/m.exec(
        readFileSync(path.join(REPO_DIR, "examples/production/toolgate.yaml"), "utf8"));
    assert.ok(admin, "the example configuration has an admin listener");
    assert.match(stages[1], new RegExp(`^HEALTHCHECK [\\s\\S]*"http://${admin[1].replace(/\./g, "\\.")}/healthz"`, "m"));
    // The build stage installs the libraries the build needs: those of scripts/install-deps.sh.
    const deps = readFileSync(path.join(REPO_DIR, "scripts/install-deps.sh"), "utf8");
    for (const lib of deps.match(/\blib[a-z0-9.+-]*-dev\b/g).filter((l) => !/cmocka|clang-rt/.test(l)))
        assert.match(stages[0], new RegExp(`\\b${lib.replace(/[.+]/g, "\\$&")}\\b`), `the build stage installs ${lib}`);
});
