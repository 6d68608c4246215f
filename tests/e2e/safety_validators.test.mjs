// The safety layer's IBAN and payment card validators against independent implementations:
// `ibantools` (isValidIBAN) and `card-validator` (number().isValid, with Luhn required for
// UnionPay too, as the gateway requires it for every brand). More than 100,000 generated
// candidates, valid ones and near misses, go through `toolgate safety validate` in one run per
// type; every answer must agree.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as ibantools from "ibantools";
import cardValidator from "card-validator";
import creditCardType from "credit-card-type";

const BIN = process.env.TOOLGATE_BIN || new URL("../../build/toolgate", import.meta.url).pathname;

// A small deterministic generator, so a failure can be reproduced.
let seed = 0x5eed1234;
function rand() {
    seed ^= seed << 13;
    seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    return seed / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const DIGITS = "0123456789";
const UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const randChars = (set, n) => Array.from({ length: n }, () => pick(set)).join("");

function runValidate(type, lines) {
    const r = spawnSync(BIN, ["safety", "validate", "--type", type], {
        input: lines.join("\n") + "\n",
        maxBuffer: 64 * 1024 * 1024,
        timeout: 60000,
    });
    assert.equal(r.status, 0, `toolgate safety validate --type ${type} failed: ${r.stderr}`);
    const out = r.stdout.toString().split("\n");
    out.pop();
    assert.equal(out.length, lines.length, "one answer per line");
    return out.map((x) => x === "1");
}

function compare(type, inputs, reference) {
    const ours = runValidate(type, inputs);
    const mismatches = [];
    let valid = 0;
    for (let i = 0; i < inputs.length; i++) {
        const theirs = reference(inputs[i]);
        if (theirs) valid++;
        if (theirs !== ours[i]) mismatches.push(`${JSON.stringify(inputs[i])}: ours ${ours[i]}, reference ${theirs}`);
    }
    console.log(`# ${type}: ${inputs.length} candidates, ${valid} valid, ${mismatches.length} disagreements`);
    assert.deepEqual(mismatches.slice(0, 20), [], `${mismatches.length} disagreements`);
    // The generator must exercise both outcomes substantially.
    assert.ok(valid > inputs.length / 5 && valid < inputs.length * 0.8, `valid share ${valid}`);
}

// ---- IBAN ----------------------------------------------------------------------------------

const specs = Object.entries(ibantools.countrySpecs).filter(([, s]) => s.chars && s.bban_regexp);

function bbanFor(regexp) {
    let out = "";
    for (const m of regexp.matchAll(/\[([A-Z0-9-]+)\]\{(\d+)\}/g)) {
        const set = m[1] === "0-9" ? DIGITS : m[1] === "A-Z" ? UPPER : DIGITS + UPPER;
        out += randChars(set, Number(m[2]));
    }
    return out;
}

function checkDigits(cc, bban) {
    const s = (bban + cc + "00").replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
    const r = Number(BigInt(s) % 97n);
    return String(98 - r).padStart(2, "0");
}

const iban = (cc, bban) => cc + checkDigits(cc, bban) + bban;

// A BBAN that passes the country's national check (when it has one), found by retrying.
function validBban(cc, spec) {
    for (let i = 0; i < 5000; i++) {
        const b = bbanFor(spec.bban_regexp);
        if (ibantools.isValidBBAN(b, cc)) return b;
    }
    return bbanFor(spec.bban_regexp);
}

function mutate(s) {
    const i = int(0, s.length - 1);
    const c = s[i];
    const set = DIGITS.includes(c) ? DIGITS : UPPER;
    return s.slice(0, i) + pick(set) + s.slice(i + 1);
}

function ibanCandidates(n) {
    const out = [];
    while (out.length < n) {
        const [cc, spec] = pick(specs);
        const bban = validBban(cc, spec);
        const good = iban(cc, bban);
        switch (int(0, 11)) {
            case 0:
            case 1:
            case 2:
                out.push(good);
                break;
            case 3: // one character changed, check digits left as they were
                out.push(mutate(good));
                break;
            case 4: // one BBAN character changed and the IBAN check digits recomputed:
                // only the structure and the national check can catch it
                out.push(iban(cc, mutate(bban)));
                break;
            case 5: // a random BBAN of the right shape with correct IBAN check digits
                out.push(iban(cc, bbanFor(spec.bban_regexp)));
                break;
            case 6: // adjacent characters swapped
                {
                    const i = int(4, good.length - 2);
                    out.push(good.slice(0, i) + good[i + 1] + good[i] + good.slice(i + 2));
                }
                break;
            case 7: // one too short or too long
                out.push(rand() < 0.5 ? good.slice(0, -1) : good + pick(DIGITS));
                break;
            case 8: // special check digits
                out.push(cc + pick(["00", "01", "02", "96", "97", "98", "99"]) + bban);
                break;
            case 9: // lower case, spaces, or letters as check digits
                out.push(pick([good.toLowerCase(), ibantools.friendlyFormatIBAN(good), cc + "AB" + bban]));
                break;
            case 10: // another country's code on this BBAN, check digits fixed
                out.push(iban(pick(specs)[0], bban));
                break;
            default: // a wrong character class where the structure wants digits or letters
                {
                    const i = int(0, bban.length - 1);
                    const swapped = bban.slice(0, i) + (DIGITS.includes(bban[i]) ? pick(UPPER) : pick(DIGITS)) + bban.slice(i + 1);
                    out.push(iban(cc, swapped));
                }
                break;
        }
    }
    return out;
}

// ---- cards ---------------------------------------------------------------------------------

const brands = ["visa", "mastercard", "american-express", "diners-club", "discover", "troy", "jcb", "unionpay",
    "naranja", "verve", "maestro", "elo", "mir", "hiper", "hipercard"].map((t) => creditCardType.getTypeInfo(t));

function luhnDigit(body) {
    let sum = 0;
    for (let i = body.length - 1, dbl = true; i >= 0; i--, dbl = !dbl) {
        let d = Number(body[i]);
        if (dbl) {
            d *= 2;
            if (d > 9) d -= 9;
        }
        sum += d;
    }
    return String((10 - (sum % 10)) % 10);
}

function prefixOf(pattern) {
    if (!Array.isArray(pattern)) return String(pattern);
    const [lo, hi] = pattern;
    // Inside the range, or one step outside it (a near miss).
    const r = rand();
    const v = r < 0.8 ? int(lo, hi) : r < 0.9 ? lo - 1 : hi + 1;
    return String(v).padStart(String(lo).length, "0");
}

function cardCandidate() {
    const b = pick(brands);
    const len = rand() < 0.85 ? pick(b.lengths) : int(11, 20);
    let body = prefixOf(pick(b.patterns));
    while (body.length < len - 1) body += pick(DIGITS);
    body = body.slice(0, Math.max(len - 1, 1));
    let n = body + (rand() < 0.75 ? luhnDigit(body) : pick(DIGITS));
    const r = rand();
    if (r < 0.1) n = mutate(n);
    else if (r < 0.2) n = n.replace(/(\d{4})(?=\d)/g, "$1 ");
    else if (r < 0.25) n = n.replace(/(\d{4})(?=\d)/g, "$1-");
    else if (r < 0.27) n = n.slice(0, 4) + "\t" + n.slice(4);
    else if (r < 0.29) n = n.slice(0, 6) + "x" + n.slice(7);
    return n;
}

function cardCandidates(n) {
    const out = [];
    while (out.length < n) {
        if (rand() < 0.1) {
            // any digits, Luhn fixed half of the time
            const body = randChars(DIGITS, int(10, 19));
            out.push(rand() < 0.5 ? body + luhnDigit(body) : body);
        } else {
            out.push(cardCandidate());
        }
    }
    return out;
}

test("IBAN validation agrees with ibantools on 60,000 candidates", () => {
    compare("iban", ibanCandidates(60000), (s) => ibantools.isValidIBAN(s));
});

test("card validation agrees with card-validator on 60,000 candidates", () => {
    compare("card", cardCandidates(60000), (s) => cardValidator.number(s, { luhnValidateUnionPay: true }).isValid);
});
