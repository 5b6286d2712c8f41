//! Command-line arguments, parsed into plain structs.

use std::path::PathBuf;

use makoto_core::key_source::KeySource;

use clap::{Args, Parser, Subcommand};

/// Makoto data attestations for Delta Lake: signed, chained, per-commit provenance.
#[derive(Debug, Parser)]
#[command(name = "makoto", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a key pair (Ed25519, or ECDSA P-256 with --algorithm ecdsa-p256): <PREFIX>.key (PKCS#8 PEM, mode 0600) and <PREFIX>.pub.
    Keygen(KeygenArgs),
    /// Print the public key (SubjectPublicKeyInfo PEM) of a key file or a PKCS#11 key, for trust files.
    Pubkey(PubkeyArgs),
    /// Attest every unattested commit of a Delta table into the warehouse.
    Attest(AttestArgs),
    /// Verify a table version against its attestations, or say exactly what changed.
    Verify(VerifyArgs),
    /// Write a portable proof that a file is part of an attested table version.
    Prove(ProveArgs),
    /// Check a proof written by `makoto prove`, offline.
    VerifyProof(VerifyProofArgs),
    /// Print a signed checkpoint of the latest attestation of every table, for anchoring.
    Head(HeadArgs),
    /// Run SQL over the system.makoto.* tables, lineage and registered user tables.
    Sql(SqlArgs),
    /// Run a SQL query over attested input tables, write the result and attest it with its inputs.
    Transform(TransformArgs),
    /// The gate: exit 0 only if a table version (and, with --upstream, its lineage) is attested and verifies.
    Check(CheckArgs),
    /// Write the Data Bill of Materials (DBOM v1) of a table version.
    Dbom(DbomArgs),
    /// Write the signed AI bill of materials of a model version: its training tables' attestations and DBOMs, and its inference logs' stream windows.
    Aibom(AibomArgs),
    /// Check an AI bill of materials written by `makoto aibom`, offline.
    VerifyAibom(VerifyAibomArgs),
    /// Write a table's attestations as Sigstore bundles or in-toto JSON Lines, for other tools.
    Export(ExportArgs),
    /// Attest the bundled sample table into a local warehouse and show the result.
    Demo(DemoArgs),
    /// Compact the system.makoto.* tables' small files and checkpoint them (nothing is deleted).
    Maintain(MaintainArgs),
    /// Run the attestation service: watch many tables and attest every new commit, with /metrics, /healthz and /readyz.
    Serve(ServeArgs),
    /// Stream-window attestations of Kafka topics.
    #[command(subcommand)]
    Kafka(KafkaCommand),
}

#[derive(Debug, Subcommand)]
pub enum KafkaCommand {
    /// Close a window every N offsets of each partition and publish its signed stream-window
    /// statement to the topic makoto.dbom.
    Attest(KafkaAttestArgs),
    /// Re-read the partitions and report injected, altered, dropped or reordered records.
    Verify(KafkaVerifyArgs),
    /// Check each record as a consumer reads it: verified (its window is published and holds
    /// it), pending (its window is not published yet) or failed (it never will verify).
    Check(KafkaVerifyArgs),
}

#[derive(Debug, Args)]
pub struct KafkaAttestArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT…].
    #[arg(long, env = "MAKOTO_KAFKA_BROKERS")]
    pub brokers: String,
    #[arg(long)]
    pub topic: String,
    /// Records (offsets) per window.
    #[arg(long, default_value_t = 1000)]
    pub window_records: u64,
    /// Whether records must carry the makoto headers (`required`: written through a makoto
    /// producer, a record without them is a finding) or may lack them (`optional`: producers
    /// nobody can change; the windows alone prove the topic unchanged). Signed into each
    /// window; verification follows the window, not its own flags.
    #[arg(long, default_value = "required", value_name = "POLICY", value_parser = |s: &str| s.parse::<makoto_kafka::HeaderPolicy>())]
    pub headers: makoto_kafka::HeaderPolicy,
    /// Private key to sign the windows with: A key file (PKCS#8 PEM) or a PKCS#11 URI (pkcs11:token=…;object=…?module-path=…&pin-source=…; PIN also from MAKOTO_PKCS11_PIN). Without it they are unsigned (Makoto L1).
    #[arg(long, env = "MAKOTO_KEY", value_name = "KEY", value_parser = KeySourceParser)]
    pub key: Option<KeySource>,
    /// Also record every published window of the topic in <WAREHOUSE>/system/makoto/windows.
    #[arg(long, env = "MAKOTO_WAREHOUSE")]
    pub warehouse: Option<String>,
    /// RFC 3161 time-stamp authority: every window's signature gets a token before it is
    /// published. Needs --key.
    #[arg(long, env = "MAKOTO_TSA", value_name = "URL")]
    pub tsa: Option<String>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct KafkaVerifyArgs {
    #[arg(long, env = "MAKOTO_KAFKA_BROKERS")]
    pub brokers: String,
    /// The topic to read.
    #[arg(long)]
    pub topic: String,
    /// Check the records against the windows attested for this topic instead (a mirror
    /// verified against its source).
    #[arg(long, value_name = "TOPIC")]
    pub as_topic: Option<String>,
    /// Trusted key (.pub) or trust file.
    #[arg(long, env = "MAKOTO_TRUST")]
    pub trust: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    #[arg(long, env = "MAKOTO_WAREHOUSE")]
    pub warehouse: String,
    /// Register a Delta table by name: NAME=URI, or NAME=URI@vN for a past version (repeatable).
    #[arg(long = "table", value_name = "NAME=URI[@vN]")]
    pub tables: Vec<makoto_sql::UserTable>,
    /// Give every --table a column of this name holding each row's data file path (relative to
    /// the table root, as system.makoto.files.path), to join rows to their commits and windows.
    #[arg(long, value_name = "NAME")]
    pub file_column: Option<String>,
    /// Default trusted key(s) of makoto_verify(envelope): a public key PEM or a trust file.
    #[arg(long, env = "MAKOTO_TRUST")]
    pub trust: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The query. Without it, statements are read from standard input (an interactive shell on a terminal).
    pub sql: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Append,
    Overwrite,
}

#[derive(Debug, Args)]
pub struct TransformArgs {
    /// The query; input tables are referred to by their NAME.
    #[arg(long)]
    pub sql: String,
    /// An input table: NAME=URI (repeatable). Pinned to its current version.
    #[arg(long = "input", value_name = "NAME=URI", required = true)]
    pub inputs: Vec<makoto_sql::UserTable>,
    /// The output Delta table (created when missing).
    #[arg(long)]
    pub output: String,
    #[arg(long, value_enum, default_value_t = Mode::Append)]
    pub mode: Mode,
    /// Name of the transform, recorded in the attestation (default: "SQL transform").
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, env = "MAKOTO_WAREHOUSE")]
    pub warehouse: String,
    /// Private key to sign the output's attestation with: A key file (PKCS#8 PEM) or a PKCS#11 URI (pkcs11:token=…;object=…?module-path=…&pin-source=…; PIN also from MAKOTO_PKCS11_PIN).
    #[arg(long, env = "MAKOTO_KEY", value_name = "KEY", value_parser = KeySourceParser)]
    pub key: KeySource,
    /// Keys inputs must be attested with (default: the public half of --key).
    #[arg(long, env = "MAKOTO_TRUST")]
    pub trust: Option<PathBuf>,
    /// Read inputs that are not attested or do not verify; recorded in the attestation.
    #[arg(long)]
    pub allow_unattested: bool,
    /// Verify inputs against the log and attestations only, without rehashing their data files.
    #[arg(long)]
    pub log_only: bool,
    /// RFC 3161 time-stamp authority for the output's attestations (as `attest --tsa`).
    #[arg(long, env = "MAKOTO_TSA", value_name = "URL")]
    pub tsa: Option<String>,
    /// The attestor's identity for the output's attestations (as `attest --identity`).
    #[arg(long, env = "MAKOTO_IDENTITY", value_name = "URI")]
    pub identity: Option<String>,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

/// The table a command checks, and the URI its attestations name.
#[derive(Debug, Args)]
pub struct AttestedTableArgs {
    /// The Delta table: a local path or a URL.
    pub table: String,
    /// Take this table (a copy: an evidence bucket, a restored backup, another scheme or mount)
    /// as the table attested under this URI. Without it, a table whose own URI has no
    /// attestations is looked up by its Delta table id.
    #[arg(long = "as", value_name = "ATTESTED_URI")]
    pub attested_as: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub target: AttestedTableArgs,
    /// The version to check (default: latest).
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    #[arg(long, env = "MAKOTO_WAREHOUSE")]
    pub warehouse: String,
    /// Trusted key (.pub) or trust file.
    #[arg(long, env = "MAKOTO_TRUST")]
    pub trust: PathBuf,
    /// Minimum Makoto level (1, 2 or 3).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub min_level: u8,
    /// Also check every table version in the lineage.
    #[arg(long)]
    pub upstream: bool,
    /// Check logs and attestations only, without rehashing data files.
    #[arg(long)]
    pub log_only: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DbomArgs {
    #[command(flatten)]
    pub target: AttestedTableArgs,
    /// The version (default: the latest attested).
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    #[arg(long, env = "MAKOTO_WAREHOUSE")]
    pub warehouse: String,
    /// Sign the DBOM (DSSE envelope) with this key: A key file (PKCS#8 PEM) or a PKCS#11 URI (pkcs11:token=…;object=…?module-path=…&pin-source=…; PIN also from MAKOTO_PKCS11_PIN).
    #[arg(long, env = "MAKOTO_KEY", value_name = "KEY", value_parser = KeySourceParser)]
    pub key: Option<KeySource>,
    /// RFC 3161 time-stamp authority: the DBOM's signature gets a token (beside `sig`). Needs --key.
    #[arg(long, env = "MAKOTO_TSA", value_name = "URL")]
    pub tsa: Option<String>,
    /// Keys to verify the lineage with for the verification summary (default: the public half of --key).
    #[arg(long, env = "MAKOTO_TRUST")]
    pub trust: Option<PathBuf>,
    /// Verify logs and attestations only, without rehashing data files.
    #[arg(long)]
    pub log_only: bool,
    /// Write the DBOM here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// A table, optionally at a version: `TABLE` or `TABLE@vN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableAt {
    pub table: String,
    pub version: Option<u64>,
}

impl std::str::FromStr for TableAt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let pinned = s.rsplit_once("@v").and_then(|(t, v)| {
            (!t.is_empty() && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.parse::<u64>().ok().map(|v| (t, v)))
                .flatten()
        });
        match pinned {
            Some((t, v)) => Ok(TableAt {
                table: t.to_owned(),
                version: Some(v),
            }),
            None if s.is_empty() => Err("an empty table".to_owned()),
            None => Ok(TableAt {
                table: s.to_owned(),
                version: None,
            }),
        }
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("model_artifact").required(true).args(["model_file", "model_digest"])))]
#[command(group(clap::ArgGroup::new("contents").required(true).multiple(true).args(["training", "inference"])))]
pub struct AibomArgs {
    /// Model name (as registered, e.g. in MLflow's model registry).
    #[arg(long)]
    pub model: String,
    /// Model version.
    #[arg(long, value_name = "VERSION")]
    pub model_version: String,
    /// The model artifact; its SHA-256 is the statement subject's digest.
    #[arg(long, value_name = "FILE")]
    pub model_file: Option<PathBuf>,
    /// The model artifact's SHA-256 (64 hex digits), instead of --model-file.
    #[arg(long, value_name = "SHA256")]
    pub model_digest: Option<makoto_core::Sha256Digest>,
    /// The MLflow run that trained the model, recorded in the AIBOM.
    #[arg(long, value_name = "RUN_ID")]
    pub mlflow_run_id: Option<String>,
    /// A training table, at its latest attested version or pinned with @vN. Repeatable.
    #[arg(long, value_name = "TABLE[@vN]")]
    pub training: Vec<TableAt>,
    /// An inference-log table attested with stream windows (`attest --windows`). Repeatable.
    #[arg(long, value_name = "TABLE")]
    pub inference: Vec<String>,
    /// The window spec to list (default: the table's only one), e.g. duration=1h.
    #[arg(long, value_name = "SPEC")]
    pub windows: Option<String>,
    /// List only windows whose records are at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// List only windows whose records are before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(long, env = "MAKOTO_WAREHOUSE")]
    pub warehouse: String,
    /// Sign the AIBOM with this key: A key file (PKCS#8 PEM) or a PKCS#11 URI (pkcs11:token=…;object=…?module-path=…&pin-source=…; PIN also from MAKOTO_PKCS11_PIN).
    #[arg(long, env = "MAKOTO_KEY", value_name = "KEY", value_parser = KeySourceParser)]
    pub key: KeySource,
    /// RFC 3161 time-stamp authority: the AIBOM's signature gets a token (beside `sig`).
    #[arg(long, env = "MAKOTO_TSA", value_name = "URL")]
    pub tsa: Option<String>,
    /// Keys everything listed must verify with (default: the public half of --key).
    #[arg(long, env = "MAKOTO_TRUST")]
    pub trust: Option<PathBuf>,
    /// Verify logs and attestations only, without rehashing data files or recomputing windows.
    #[arg(long)]
    pub log_only: bool,
    /// Write the AIBOM here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyAibomArgs {
    /// The AIBOM file (a DSSE envelope).
    pub aibom: PathBuf,
    /// Trusted key (.pub) or trust file.
    #[arg(long, env = "MAKOTO_TRUST")]
    pub trust: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Formats of `makoto export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormatArg {
    /// One Sigstore bundle (v0.3) per version: <NAME>-v<N>.sigstore.json.
    SigstoreBundle,
    /// One in-toto JSON Lines file of DSSE envelopes: <NAME>.intoto.jsonl.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub target: AttestedTableArgs,
    #[arg(long, env = "MAKOTO_WAREHOUSE")]
    pub warehouse: String,
    /// Only this version (default: every attested version).
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    #[arg(long, value_enum)]
    pub format: ExportFormatArg,
    /// Directory to write into (created when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Path prefix of the key files (e.g. keys/prod writes keys/prod.key and keys/prod.pub).
    pub prefix: PathBuf,
    /// Signature algorithm: Ed25519, or ECDSA P-256 with SHA-256 (ES256, what cloud KMSs and
    /// HSMs offer).
    #[arg(long, value_enum, default_value_t = KeyAlgorithm::Ed25519)]
    pub algorithm: KeyAlgorithm,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PubkeyArgs {
    /// The key: a key file (PKCS#8 PEM) or a PKCS#11 URI (pkcs11:token=…;object=…?module-path=…&pin-source=…).
    #[arg(long, env = "MAKOTO_KEY", value_name = "KEY", value_parser = KeySourceParser)]
    pub key: KeySource,
    /// Write the PEM here (created, never overwritten) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print a JSON object (keyid, algorithm, custody, publicKey PEM) instead of the PEM.
    #[arg(long)]
    pub json: bool,
}

/// `keygen --algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyAlgorithm {
    Ed25519,
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
}

impl From<KeyAlgorithm> for makoto_core::keys::Algorithm {
    fn from(a: KeyAlgorithm) -> Self {
        match a {
            KeyAlgorithm::Ed25519 => makoto_core::keys::Algorithm::Ed25519,
            KeyAlgorithm::EcdsaP256 => makoto_core::keys::Algorithm::EcdsaP256Sha256,
        }
    }
}

#[derive(Debug, Args)]
pub struct AttestArgs {
    /// The Delta table: a local path or a URL (file://, s3://, az://, abfss://, gs://).
    pub table: String,
    /// Where the system.makoto.* tables live (local path or URL).
    #[arg(long, env = "MAKOTO_WAREHOUSE", required_unless_present = "via")]
    pub warehouse: Option<String>,
    /// Instead of attesting here, ask the `makoto serve` at this URL to attest the table
    /// through --to-version (default: its latest version) and wait for it. The bearer token is
    /// read from MAKOTO_SERVICE_TOKEN.
    #[arg(long, env = "MAKOTO_SERVICE", value_name = "URL", conflicts_with_all = ["key", "tsa", "identity", "windows"])]
    pub via: Option<String>,
    /// With --via: how long to wait for the service's answer.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration, requires = "via")]
    pub wait: std::time::Duration,
    /// Private key to sign with: A key file (PKCS#8 PEM) or a PKCS#11 URI (pkcs11:token=…;object=…?module-path=…&pin-source=…; PIN also from MAKOTO_PKCS11_PIN). Without it attestations are unsigned (Makoto L1).
    #[arg(long, env = "MAKOTO_KEY", value_name = "KEY", value_parser = KeySourceParser)]
    pub key: Option<KeySource>,
    /// Attest up to this version instead of the latest.
    #[arg(long, value_name = "N")]
    pub to_version: Option<u64>,
    /// Commits attested per write to the system tables, at most.
    #[arg(long, default_value_t = makoto_delta::attest::DEFAULT_BATCH_COMMITS, value_name = "N")]
    pub batch_size: usize,
    /// Commit-file MiB per write to the system tables, at most (one commit at least): bounds
    /// the memory a run holds for tables with many files per commit.
    #[arg(long, default_value_t = 4, value_name = "MIB")]
    pub batch_mib: u64,
    /// Files hashed in parallel (default: twice the number of cores).
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
    /// Also group the records of append-only commits into windows and attest each closed
    /// window with a stream-window/v1 statement: records=N, commits=N or duration=D (ms, s, m,
    /// h, d).
    #[arg(long, value_name = "SPEC")]
    pub windows: Option<makoto_core::window::WindowSpec>,
    /// RFC 3161 time-stamp authority (http or https URL): the last signature of every batch
    /// is time-stamped, which covers the batch through the chain. Needs --key.
    #[arg(long, env = "MAKOTO_TSA", value_name = "URL")]
    pub tsa: Option<String>,
    /// The attestor's identity (a URI such as spiffe://… or https://…/jobs/nightly), named as
    /// each statement's collector or executor; a trust file binds it to the key.
    #[arg(long, env = "MAKOTO_IDENTITY", value_name = "URI")]
    pub identity: Option<String>,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: AttestedTableArgs,
    /// Where the system.makoto.* tables live.
    #[arg(long, env = "MAKOTO_WAREHOUSE")]
    pub warehouse: String,
    /// Trusted key: a public key PEM (.pub), or a trust file (JSON) listing keys with validity windows.
    #[arg(long, env = "MAKOTO_TRUST")]
    pub trust: std::path::PathBuf,
    /// Verify the table as of this version (default: latest).
    #[arg(long, value_name = "N", conflicts_with = "timestamp")]
    pub version: Option<u64>,
    /// Verify the version current at this time (RFC 3339, e.g. 2026-11-21T12:00:00Z).
    #[arg(long, value_name = "T")]
    pub timestamp: Option<String>,
    /// Check the log and the attestations only; do not read data files.
    #[arg(long)]
    pub log_only: bool,
    /// Report unsigned (L1) attestations as warnings instead of failing.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Only check what changed since the last signed, successful verification recorded in
    /// system.makoto.verifications.
    #[arg(long)]
    pub since_last: bool,
    /// A head written by `makoto head`: the attestation table must still hold what it recorded.
    #[arg(long, value_name = "HEAD")]
    pub anchor: Option<std::path::PathBuf>,
    /// Key to sign the verification record with (needed for a later --since-last): A key file (PKCS#8 PEM) or a PKCS#11 URI (pkcs11:token=…;object=…?module-path=…&pin-source=…; PIN also from MAKOTO_PKCS11_PIN).
    #[arg(long, env = "MAKOTO_VERIFIER_KEY", value_name = "KEY", value_parser = KeySourceParser)]
    pub key: Option<KeySource>,
    /// Do not record the verification in system.makoto.verifications.
    #[arg(long)]
    pub no_record: bool,
    /// Files hashed in parallel (default: twice the number of cores).
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
    /// Whether delta-rs opens the verified version and must see the attested reader view.
    /// `skip` leaves only makoto's own checks (the coverage line says so); on a long log with
    /// no checkpoint, opening costs what any reader pays.
    #[arg(long, value_enum, default_value_t = ReaderCheckArg::DeltaRs)]
    pub reader_check: ReaderCheckArg,
    /// Once the replayed state or reader view holds more than FILES live files, drop its
    /// pages from memory where the warehouse stores them and read them back when needed:
    /// less memory on tables of hundreds of thousands of files, several times the time.
    #[arg(long, value_name = "FILES")]
    pub evict_above: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--reader-check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReaderCheckArg {
    DeltaRs,
    Skip,
}

impl From<ReaderCheckArg> for makoto_delta::ReaderCheck {
    fn from(a: ReaderCheckArg) -> Self {
        match a {
            ReaderCheckArg::DeltaRs => makoto_delta::ReaderCheck::DeltaRs,
            ReaderCheckArg::Skip => makoto_delta::ReaderCheck::Skip,
        }
    }
}

#[derive(Debug, Args)]
pub struct ProveArgs {
    #[command(flatten)]
    pub target: AttestedTableArgs,
    /// The data file, as its path relative to the table root (as in system.makoto.files).
    #[arg(long, requires = "version", required_unless_present = "record")]
    pub file: Option<String>,
    /// The table version (with --file).
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    /// A record of an attested stream window: VERSION:INDEX, the INDEX-th record (from 0) that
    /// commit VERSION appended.
    #[arg(long, value_name = "VERSION:INDEX", conflicts_with_all = ["file", "version"])]
    pub record: Option<makoto_core::window::RecordPos>,
    #[arg(long, env = "MAKOTO_WAREHOUSE")]
    pub warehouse: String,
    /// Write the proof here instead of standard output.
    #[arg(long, value_name = "PROOF")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyProofArgs {
    /// The proof file.
    pub proof: std::path::PathBuf,
    /// Trusted key (.pub) or trust file.
    #[arg(long, env = "MAKOTO_TRUST")]
    pub trust: std::path::PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HeadArgs {
    #[arg(long, env = "MAKOTO_WAREHOUSE")]
    pub warehouse: String,
    /// Private key to sign the head with: A key file (PKCS#8 PEM) or a PKCS#11 URI (pkcs11:token=…;object=…?module-path=…&pin-source=…; PIN also from MAKOTO_PKCS11_PIN).
    #[arg(long, env = "MAKOTO_KEY", value_name = "KEY", value_parser = KeySourceParser)]
    pub key: KeySource,
    /// RFC 3161 time-stamp authority: the head's signature gets a token (beside `sig`), so the
    /// head proves every attestation it names existed by the token's time.
    #[arg(long, env = "MAKOTO_TSA", value_name = "URL")]
    pub tsa: Option<String>,
    /// Write the signed head here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The sample table to attest.
    #[arg(long, default_value = "data/sample/sales")]
    pub table: String,
    /// Working directory for the demo key and warehouse.
    #[arg(long, default_value = "target/makoto-demo")]
    pub dir: PathBuf,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--log-only` as the library's verification mode: the flag is parsed here, once.
pub(crate) fn verify_mode(log_only: bool) -> makoto_delta::VerifyMode {
    match log_only {
        true => makoto_delta::VerifyMode::LogOnly,
        false => makoto_delta::VerifyMode::Deep,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

/// Parses `--key` into a [`KeySource`] without echoing the argument in the error (clap's own
/// message would repeat a `pin-value` the URI must not carry).
#[derive(Debug, Clone, Copy)]
pub struct KeySourceParser;

impl clap::builder::TypedValueParser for KeySourceParser {
    type Value = KeySource;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<KeySource, clap::Error> {
        let reason = match value.to_str() {
            Some(s) => match s.parse() {
                Ok(k) => return Ok(k),
                Err(e) => e.to_string(),
            },
            None if !value.to_string_lossy().starts_with("pkcs11:") => {
                return Ok(KeySource::File(PathBuf::from(value)));
            }
            None => "a PKCS#11 URI must be UTF-8".into(),
        };
        Err(clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            format!("--key: {reason}\n"),
        )
        .with_cmd(cmd))
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("table_set").required(true).args(["tables", "discover"])))]
pub struct ServeArgs {
    /// Where the system.makoto.* tables live (created when missing).
    #[arg(long, env = "MAKOTO_WAREHOUSE")]
    pub warehouse: String,
    /// Signing key: a key file (PKCS#8 PEM) or a PKCS#11 URI. Held only by the service.
    #[arg(long, env = "MAKOTO_KEY", value_name = "KEY", value_parser = KeySourceParser)]
    pub key: Option<KeySource>,
    /// A file listing one table per line (URI, absolute path, or path relative to the file;
    /// `#` comments). Reloaded when it changes and on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub tables: Option<PathBuf>,
    /// Storage prefixes to search for Delta tables (directories holding _delta_log/),
    /// rescanned every --rescan-interval.
    #[arg(long, value_name = "PREFIX", num_args = 1..)]
    pub discover: Vec<String>,
    /// Address of the HTTP endpoints (/metrics, /healthz, /readyz, /v1/tables).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub listen: String,
    /// How soon an idle table is checked again (ms, s, m); doubles while it stays idle, up to
    /// five times this.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: std::time::Duration,
    /// How often the tables file's modification time is checked, or discovery rescans.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub rescan_interval: std::time::Duration,
    /// This replica's share of the tables: I/N owns the tables whose URI hashes to I (of N).
    #[arg(long, value_name = "I/N", default_value = "0/1")]
    pub shard: makoto_serve::shard::Shard,
    /// Attest runs in flight at once, across tables. Their appends to the system tables are
    /// committed together, so more runs in flight means fewer, larger commits.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub concurrency: usize,
    /// RFC 3161 time-stamp authority for every batch (as `attest --tsa`). Needs --key.
    #[arg(long, env = "MAKOTO_TSA", value_name = "URL")]
    pub tsa: Option<String>,
    /// The service's identity, named in every statement it signs (as `attest --identity`).
    #[arg(long, env = "MAKOTO_IDENTITY", value_name = "URI")]
    pub identity: Option<String>,
    /// Log lines as text or as JSON objects (one per line), on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Tenants who may ask for attestations (POST /v1/attest, `attest --via`): a JSON file of
    /// names, SHA-256 digests of their bearer tokens, and allowed tables. Without it requests
    /// are refused.
    #[arg(long, value_name = "FILE")]
    pub tenants: Option<PathBuf>,
    /// How often memory glibc's malloc kept after the runs' transient peaks is given back to
    /// the system (malloc_trim), or `off`. The `makoto` binary allocates through jemalloc,
    /// which gives freed pages back itself: this trims what C code allocated, and the
    /// Python package's in-process command.
    #[arg(long, value_name = "DURATION|off", default_value = "10s", value_parser = parse_every)]
    pub release_memory_interval: Every,
}

/// A duration, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every(pub Option<std::time::Duration>);

fn parse_every(s: &str) -> Result<Every, String> {
    match s {
        "off" => Ok(Every(None)),
        _ => parse_duration(s)
            .map(|d| Every(Some(d)))
            .map_err(|e| format!("{e}, or off")),
    }
}

/// `serve --log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `250ms`, `5s`, `2m`, `1h`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and ms, s, m or h"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(format!("{s:?}: the unit must be ms, s, m or h")),
    };
    if ms == 0 {
        return Err(format!("{s:?}: must be more than zero"));
    }
    Ok(std::time::Duration::from_millis(ms))
}

#[derive(Debug, Args)]
pub struct MaintainArgs {
    /// The warehouse whose system tables to compact and checkpoint.
    #[arg(long, env = "MAKOTO_WAREHOUSE")]
    pub warehouse: String,
    /// Also set the system tables' log and tombstone retention (`delta.logRetentionDuration`,
    /// `delta.deletedFileRetentionDuration`; default one hour), e.g. `10m`; at least `1m`.
    #[arg(long, value_name = "DURATION", value_parser = parse_retention)]
    pub retention: Option<makoto_delta::store::SystemRetention>,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_retention(s: &str) -> Result<makoto_delta::store::SystemRetention, String> {
    makoto_delta::store::SystemRetention::new(parse_duration(s)?)
        .ok_or_else(|| format!("{s:?}: must be at least 1m"))
}
