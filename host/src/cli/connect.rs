//! What the commands that talk to Redis share: the config file, and the
//! Redis it names.

use crate::config::Config;
use crate::embedded_redis::EmbeddedRedis;
use crate::queue::RedisTarget;
use std::path::PathBuf;

/// `-c/--config`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// The configuration file.
    #[arg(short, long, default_value = "bullpen.toml")]
    pub config: PathBuf,
}

/// A connection to the config's Redis, for one command.
pub(super) struct Connected {
    pub config: Config,
    pub target: RedisTarget,
    embedded: Option<EmbeddedRedis>,
}

impl Connected {
    pub async fn open(arg: &ConfigArg) -> anyhow::Result<Self> {
        let config = Config::load(&arg.config)?;
        let (target, embedded) = crate::host::redis_for(&config).await?;
        // Fail in seconds, with the reason, when Redis is down.
        target.ping().await?;
        Ok(Connected {
            config,
            target,
            embedded,
        })
    }

    /// Checks that `queue` is one of the config's queues.
    pub fn check_queue(&self, queue: &str) -> anyhow::Result<()> {
        self.config.queue(queue)?;
        Ok(())
    }

    /// Stops the embedded Redis if this command started it.
    pub async fn close(self) {
        if let Some(redis) = self.embedded {
            redis.stop().await;
        }
    }
}
