//! Keys in a PKCS#11 token: SoftHSM2 (Debian's `softhsm2`), a token initialised here by
//! `softhsm2-util`, Ed25519 and P-256 key pairs generated inside it by `pkcs11-tool` (OpenSC).
//! The public keys are exported by `pkcs11-tool` and converted by `openssl`, and signatures
//! are checked with `openssl`, independently of makoto.

use std::path::{Path, PathBuf};
use std::process::Command;

use makoto_core::dsse::Envelope;

use crate::support::*;

/// A SoftHSM2 token with two key pairs: `ed` (Ed25519, id 01) and `p256` (P-256, id 02).
struct SoftHsm {
    _dir: tempfile::TempDir,
    conf: PathBuf,
    module: PathBuf,
    pin_file: PathBuf,
    pin: String,
}

const MODULES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl SoftHsm {
    /// A new token, or `None` (a skip) when SoftHSM2 or OpenSC is not installed, unless
    /// MAKOTO_REQUIRE_HSM=1 (CI), where that fails the test.
    fn new() -> Option<SoftHsm> {
        let module = MODULES.iter().map(PathBuf::from).find(|p| p.exists());
        let tools = ["softhsm2-util", "pkcs11-tool"]
            .iter()
            .all(|t| Command::new(t).arg("--help").output().is_ok());
        let Some(module) = module.filter(|_| tools) else {
            let reason = "SoftHSM2 and OpenSC are not installed (apt-get install softhsm2 opensc)";
            if std::env::var("MAKOTO_REQUIRE_HSM").is_ok_and(|v| v == "1") {
                panic!("{reason}");
            }
            eprintln!("SKIPPED: {reason}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let pin = format!("pin-{}", std::process::id());
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{pin}\n")).unwrap();
        let hsm = SoftHsm {
            _dir: dir,
            conf,
            module,
            pin_file,
            pin,
        };
        run(hsm.command("softhsm2-util").args([
            "--init-token",
            "--free",
            "--label",
            "makoto-test",
            "--so-pin",
            "so-secret",
            "--pin",
            &hsm.pin,
        ]));
        for (key_type, label, id) in [
            ("EC:edwards25519", "ed", "01"),
            ("EC:prime256v1", "p256", "02"),
        ] {
            run(hsm.tool().args([
                "--login",
                "--pin",
                &hsm.pin,
                "--keypairgen",
                "--key-type",
                key_type,
                "--label",
                label,
                "--id",
                id,
            ]));
        }
        Some(hsm)
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SOFTHSM2_CONF", &self.conf);
        c
    }

    fn tool(&self) -> Command {
        let mut c = self.command("pkcs11-tool");
        c.arg("--module")
            .arg(&self.module)
            .args(["--token-label", "makoto-test"]);
        c
    }

    /// The URI of key `label`, with the module and the PIN file.
    fn uri(&self, label: &str) -> String {
        format!(
            "pkcs11:token=makoto-test;object={label}?module-path={}&pin-source=file:{}",
            self.module.display(),
            self.pin_file.display()
        )
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![("SOFTHSM2_CONF", self.conf.display().to_string())]
    }

    fn makoto(&self, args: &[&str]) -> ChildOutput {
        makoto_env(args, &self.env())
    }

    /// The public key of `label` as `pkcs11-tool` reads it out of the token, converted to PEM
    /// by `openssl`.
    fn exported_public_pem(&self, label: &str, dir: &Path) -> String {
        let der = dir.join(format!("{label}.exported"));
        run(self
            .tool()
            .args(["--read-object", "--type", "pubkey", "--label", label])
            .arg("--output-file")
            .arg(&der));
        run(Command::new("openssl")
            // pkcs11-tool writes Ed25519 keys as PEM and EC keys as DER: let openssl tell.
            .args(["pkey", "-pubin", "-in"])
            .arg(&der))
    }
}

/// Checks a DSSE signature with `openssl`: the PAE bytes under the public key PEM.
fn openssl_verifies(envelope: &Envelope, public_pem: &Path, dir: &Path) -> bool {
    let payload = envelope.payload();
    let pae = makoto_core::dsse::pae(envelope.payload_type(), payload);
    let sig = envelope.signatures()[0].sig();
    std::fs::write(dir.join("pae"), &pae).unwrap();
    std::fs::write(dir.join("sig"), sig).unwrap();
    let pem = std::fs::read_to_string(public_pem).unwrap();
    let mut cmd = Command::new("openssl");
    if pem.len() < 150 {
        // Ed25519 (a 44-byte SubjectPublicKeyInfo): pure EdDSA over the whole message.
        cmd.args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
            .arg(public_pem)
            .arg("-in")
            .arg(dir.join("pae"))
            .arg("-sigfile")
            .arg(dir.join("sig"));
    } else {
        cmd.args(["dgst", "-sha256", "-verify"])
            .arg(public_pem)
            .arg("-signature")
            .arg(dir.join("sig"))
            .arg(dir.join("pae"));
    }
    cmd.output().unwrap().status.success()
}

/// Every file under `dir`, read as bytes, searched for `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn keys_in_a_token_sign_attestations_that_verify_independently() {
    let Some(hsm) = SoftHsm::new() else { return };
    for (label, algorithm) in [("ed", "ed25519"), ("p256", "ecdsa-p256")] {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("sales");
        copy_dir(&repo_root().join("data/sample/sales"), &table);
        let wh = dir.path().join("wh");
        let uri = hsm.uri(label);
        let public = dir.path().join(format!("{label}.pub"));

        // The public key makoto reads from the token is the one pkcs11-tool exports.
        let args = [
            "pubkey",
            "--key",
            &uri,
            "--out",
            public.to_str().unwrap(),
            "--json",
        ];
        let out = hsm.makoto(&args);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let shown: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(shown["algorithm"], algorithm);
        assert_eq!(
            shown["custody"], "pkcs11",
            "SoftHSM2 keys are sensitive, not extractable"
        );
        let exported = hsm.exported_public_pem(label, dir.path());
        assert_eq!(std::fs::read_to_string(&public).unwrap(), exported);
        assert_eq!(shown["publicKey"], exported.as_str());

        // Attest with the token's key; every row is signed by it.
        let out = hsm.makoto(&[
            "attest",
            table.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--key",
            &uri,
        ]);
        assert_eq!(out.code, Some(0), "{label}: {}", out.stderr);
        let rows = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(attestation_rows(&wh, &table));
        assert!(rows.len() >= 2, "{label}: {} rows", rows.len());
        for r in &rows {
            assert_eq!(
                r.keyid.as_ref().map(|k| k.as_str()),
                shown["keyid"].as_str(),
                "v{}",
                r.version
            );
            let envelope = Envelope::from_json(r.envelope.as_bytes()).unwrap();
            assert!(
                openssl_verifies(&envelope, &public, dir.path()),
                "{label}: openssl rejects the signature of v{}",
                r.version
            );
        }

        // makoto verifies against the exported key, and against no other.
        let verify = |trust: &Path| {
            hsm.makoto(&[
                "verify",
                table.to_str().unwrap(),
                "--warehouse",
                wh.to_str().unwrap(),
                "--trust",
                trust.to_str().unwrap(),
                "--no-record",
            ])
        };
        assert_eq!(verify(&public).code, Some(0), "{label}");
        let (_, other) = keyfiles(dir.path());
        assert_eq!(
            verify(Path::new(&other)).code,
            Some(1),
            "{label}: foreign key"
        );

        // A head and a DBOM signed in the token verify under the same key.
        let head = hsm.makoto(&["head", "--warehouse", wh.to_str().unwrap(), "--key", &uri]);
        assert_eq!(head.code, Some(0), "{}", head.stderr);
        let envelope = Envelope::from_json(head.stdout.trim().as_bytes()).unwrap();
        assert!(
            openssl_verifies(&envelope, &public, dir.path()),
            "{label}: head"
        );
        let mut altered: serde_json::Value = serde_json::from_str(head.stdout.trim()).unwrap();
        altered["payloadType"] = "application/vnd.other+json".into();
        let altered = Envelope::from_json(altered.to_string().as_bytes()).unwrap();
        assert!(
            !openssl_verifies(&altered, &public, dir.path()),
            "{label}: the independent check rejects an altered envelope"
        );
        let dbom = hsm.makoto(&[
            "dbom",
            table.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--key",
            &uri,
        ]);
        assert_eq!(dbom.code, Some(0), "{}", dbom.stderr);
        let envelope = Envelope::from_json(dbom.stdout.trim().as_bytes()).unwrap();
        assert!(
            openssl_verifies(&envelope, &public, dir.path()),
            "{label}: dbom"
        );

        // The PIN is nowhere: not in the output, not in any file of the warehouse.
        for o in [&out, &head, &dbom] {
            assert!(!o.stdout.contains(&hsm.pin) && !o.stderr.contains(&hsm.pin));
        }
        assert_eq!(
            files_containing(&wh, hsm.pin.as_bytes()),
            Vec::<PathBuf>::new()
        );
    }
}

#[test]
fn unusable_token_keys_are_one_line_errors_that_write_nothing() {
    let Some(hsm) = SoftHsm::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("sales");
    copy_dir(&repo_root().join("data/sample/sales"), &table);
    let wh = dir.path().join("wh");
    let wrong_pin = dir.path().join("wrong-pin");
    std::fs::write(&wrong_pin, "wrong-pin-4242\n").unwrap();
    let module = hsm.module.display().to_string();
    let pin = hsm.pin_file.display().to_string();
    type Case<'a> = (String, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            format!(
                "pkcs11:token=makoto-test;object=ed?module-path={module}&pin-source={}",
                wrong_pin.display()
            ),
            vec![],
            "the PIN is incorrect",
        ),
        (
            format!(
                "pkcs11:token=makoto-test;object=ed?module-path={module}&pin-value=leaked-pin-777"
            ),
            vec![],
            "pin-value is refused",
        ),
        (
            format!(
                "pkcs11:token=makoto-test;object=missing?module-path={module}&pin-source={pin}"
            ),
            vec![],
            "no private key matches",
        ),
        (
            format!("pkcs11:token=other-token;object=ed?module-path={module}&pin-source={pin}"),
            vec![],
            "no token matches",
        ),
        (
            "pkcs11:token=makoto-test;object=ed".to_owned(),
            vec![("MAKOTO_PKCS11_MODULE", module.clone())],
            "no PIN",
        ),
        (
            "pkcs11:token=makoto-test;object=ed".to_owned(),
            vec![],
            "no PKCS#11 module",
        ),
        (
            format!(
                "pkcs11:token=makoto-test;object=ed?module-path={}&pin-source={pin}",
                dir.path().join("nope.so").display()
            ),
            vec![],
            "cannot load the module",
        ),
    ];
    for (uri, extra, reason) in cases {
        let mut env = hsm.env();
        env.extend(extra);
        let args = [
            "attest",
            table.to_str().unwrap(),
            "--warehouse",
            wh.to_str().unwrap(),
            "--key",
            &uri,
        ];
        let out = makoto_env(&args, &env);
        let line = sole_error(&args, &out);
        assert!(line.contains(reason), "{uri}: {line}");
        assert!(line.contains("pkcs11:token="), "names the key: {line}");
        for secret in ["wrong-pin-4242", "leaked-pin-777", hsm.pin.as_str()] {
            assert!(!out.stderr.contains(secret), "{uri}: {}", out.stderr);
        }
        assert!(!wh.exists(), "{uri}: the warehouse was created");
    }
    // The right PIN from the environment works.
    let mut env = hsm.env();
    env.push(("MAKOTO_PKCS11_MODULE", module));
    env.push(("MAKOTO_PKCS11_PIN", hsm.pin.clone()));
    let out = makoto_env(
        &["pubkey", "--key", "pkcs11:token=makoto-test;id=%02"],
        &env,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("ecdsa-p256"), "{}", out.stderr);
}
