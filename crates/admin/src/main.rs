//! `entraguard-admin`: the admin API and the Settings → Webhooks page (port 3000 by default).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use entraguard_admin::{AppState, serve};
use entraguard_core::queue::Shards;
use entraguard_core::secret::Secret;
use entraguard_core::settings::{LogSettings, RedisSettings, SealingSettings, TargetSettings, parse_bool};
use entraguard_core::store::EndpointStore;
use entraguard_delivery::delivery::Deliverer;
use entraguard_delivery::settings::DeliverySettings;

/// EntraGuard Notify admin server: endpoints API, Send test, Recent Deliveries, dead letters, and
/// the Settings → Webhooks page. Delivery settings (SSRF allow-list, HTTPS rule, timeout, SMTP,
/// encryption key) are the workers', so Send test takes exactly the production path.
#[derive(Debug, Parser)]
#[command(name = "entraguard-admin", version, about, long_about = None, args_override_self = true)]
struct AdminConfig {
    /// Address to listen on.
    #[arg(long, env = "NOTIFY_ADMIN_ADDR", default_value = "0.0.0.0:3000")]
    listen: SocketAddr,

    /// Bearer token for the API and the page's sign-in. Required unless --insecure-local-only.
    #[arg(long, env = "NOTIFY_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<Secret>,

    /// Mark the page's session cookie Secure even when requests do not carry
    /// `X-Forwarded-Proto: https` (a TLS proxy that does not set it): 1/0, true/false, yes/no.
    #[arg(long, env = "NOTIFY_ADMIN_SECURE_COOKIE", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    secure_cookie: bool,

    /// Run without a token, listening on 127.0.0.1 only (a developer's machine).
    #[arg(long)]
    insecure_local_only: bool,

    #[command(flatten)]
    redis: RedisSettings,

    #[command(flatten)]
    sealing: SealingSettings,

    #[command(flatten)]
    targets: TargetSettings,

    #[command(flatten)]
    delivery: DeliverySettings,

    #[command(flatten)]
    log: LogSettings,
}

fn main() -> ExitCode {
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: cannot read .env: {e}");
        return ExitCode::from(2);
    }
    let config: AdminConfig = entraguard_core::settings::parse();
    entraguard_process::logging::init(config.log.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config));
    entraguard_process::logging::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut config: AdminConfig) -> anyhow::Result<()> {
    let token = match (config.token.take(), config.insecure_local_only) {
        (Some(t), _) => {
            entraguard_admin::check_token(t.expose())?;
            Some(Arc::new(t))
        }
        (None, true) => {
            config.listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            tracing::warn!("no admin token: listening on 127.0.0.1 only (--insecure-local-only)");
            None
        }
        (None, false) => anyhow::bail!(
            "NOTIFY_ADMIN_TOKEN is not set: set a token of 16+ characters, or start with --insecure-local-only on a developer machine"
        ),
    };
    config.delivery.validate()?;
    let shards = Shards::connect(&config.redis.config()?, config.redis.layout())
        .await
        .with_context(|| format!("cannot reach Redis at {}", config.redis.redis_url))?;
    // Refused when the deployment records another queue shard count: the page would show and
    // reset the wrong shards' breakers and lanes.
    let (shards, _) = match shards.checked(entraguard_core::shards::LayoutRole::Reader).await {
        Ok(v) => v,
        Err(entraguard_core::queue::QueueError::Layout(e)) => return Err(e.into()),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("cannot read the shard layout at {}", config.redis.redis_url)));
        }
    };
    let home = shards.home();
    let store =
        EndpointStore::new(home.connection(), home.keys().clone()).with_cipher(config.sealing.cipher()?);
    let deliverer = Deliverer::from_settings(&config.delivery, config.targets.allow_http)?;
    let mut state = AppState::new(shards, store, deliverer, config.targets.policy(), token);
    state.secure_cookie = config.secure_cookie;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "admin server listening; page at /settings/webhooks");
    serve(listener, state, async {
        entraguard_process::shutdown::signal().await;
    })
    .await?;
    Ok(())
}
