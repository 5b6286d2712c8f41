use std::sync::Arc;

use anyhow::Context as _;
use makoto_serve::schedule::Timing;
use makoto_serve::tables::TableSource;
use makoto_serve::{ServeConfig, Service, Shared};

use super::EXIT_OK;
use crate::args::ServeArgs;

/// Runs the service until SIGTERM or Ctrl-C; SIGHUP reloads the tables file.
pub async fn run(ctx: &crate::context::Context, args: ServeArgs) -> anyhow::Result<u8> {
    let signer = crate::context::signer(args.key.as_ref())?;
    if signer.is_none() {
        eprintln!(
            "warning: no --key (or MAKOTO_KEY): the service writes unsigned attestations (Makoto L1)"
        );
    }
    let tsa = makoto_delta::tsa::TsaClient::for_run(args.tsa.as_deref(), signer.is_some()).await?;
    let tenants = args
        .tenants
        .as_deref()
        .map(makoto_serve::tenants::Tenants::read)
        .transpose()?;
    let tables = match args.tables {
        Some(path) => TableSource::File(path),
        None => TableSource::Discover(args.discover),
    };
    let timing = Timing {
        poll: args.poll_interval,
        idle_max: args.poll_interval.saturating_mul(5),
        ..Timing::default()
    };
    let config = ServeConfig {
        warehouse: args.warehouse,
        storage: ctx.storage().clone(),
        signer,
        tables,
        shard: args.shard,
        concurrency: args.concurrency.max(1),
        timing,
        rescan: args.rescan_interval,
        tsa,
        identity: args.identity,
        release_memory: args.release_memory_interval.0,
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let address = listener.local_addr()?;
    let shared = Arc::new(Shared {
        tenants,
        ..Shared::default()
    });
    let endpoints = tokio::spawn(makoto_serve::http::serve(listener, shared.clone()));
    // Scripts and tests read the bound address (with port 0, the port the system chose).
    eprintln!("makoto serve: listening on http://{address}");
    let service = Service::open(config, shared.clone()).await?;
    let hangups = tokio::spawn(reload_on_hangup(shared.clone()));
    let result = service.run(shutdown_signal()).await;
    endpoints.abort();
    hangups.abort();
    result?;
    eprintln!("makoto serve: stopped");
    Ok(EXIT_OK)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn reload_on_hangup(shared: Arc<Shared>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            while hup.recv().await.is_some() {
                shared
                    .reload
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = shared;
}
