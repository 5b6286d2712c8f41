// Verifies Sigstore bundles exported by `makoto export --format sigstore-bundle` with
// @sigstore/verify, given the signer's public key and, optionally, the TSA's certificate chain.
//   node verify.mjs PUBLIC_KEY_PEM [TSA_CHAIN_PEM] BUNDLE...
// Prints one line per bundle: "ok <file> timestamps=<n>" or "FAIL <file>: <reason>"; exits 1 on
// any failure. A bundle with an RFC 3161 token must verify with one trusted timestamp.
import { readFileSync } from "node:fs";
import { createPublicKey } from "node:crypto";
import { bundleFromJSON } from "@sigstore/bundle";
import { X509Certificate } from "@sigstore/core";
import { Verifier, toSignedEntity } from "@sigstore/verify";

const [keyPath, ...rest] = process.argv.slice(2);
let chainPath = null;
if (rest.length && rest[0].endsWith(".pem")) chainPath = rest.shift();
const publicKey = createPublicKey(readFileSync(keyPath));
const chain = chainPath
  ? readFileSync(chainPath, "utf8")
      .split(/(?=-----BEGIN CERTIFICATE-----)/)
      .filter((p) => p.includes("BEGIN CERTIFICATE"))
      .map((p) => X509Certificate.parse(p))
  : [];
const trust = {
  certificateAuthorities: [],
  timestampAuthorities: chain.length
    ? [{ certChain: chain, validFor: { start: new Date(0), end: new Date(8640000000000000) } }]
    : [],
  tlogs: [],
  ctlogs: [],
  publicKey: () => ({ publicKey, validFor: () => true }),
};
let failed = 0;
for (const file of rest) {
  try {
    const bundle = bundleFromJSON(JSON.parse(readFileSync(file, "utf8")));
    const stamps = bundle.verificationMaterial.timestampVerificationData?.rfc3161Timestamps ?? [];
    const verifier = new Verifier(trust, {
      tlogThreshold: 0,
      ctlogThreshold: 0,
      timestampThreshold: stamps.length ? 1 : 0,
    });
    verifier.verify(toSignedEntity(bundle));
    console.log(`ok ${file} timestamps=${stamps.length}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${file}: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
