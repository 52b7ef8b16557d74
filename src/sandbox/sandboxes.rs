//! The engine connection and the settings every sandbox is made with: creating sandboxes,
//! listing a run's containers, and reaping orphans.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RenameContainerOptionsBuilder, StartContainerOptions,
};
use bollard::Docker;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::container;
use super::engine::DockerEndpoint;
use super::error::{is_not_found, SandboxError};
use super::handle::Sandbox;
use super::pool::Pool;
use super::reaper;
use super::settings::SandboxSettings;
use super::tar_stream;

/// A run's containers are reaped this long after the run limit, whoever owns them.
const REAP_GRACE: Duration = Duration::from_secs(15 * 60);

/// The Docker engine and the settings every sandbox is made with. Cheap to clone.
#[derive(Clone)]
pub struct Sandboxes {
    shared: Arc<Shared>,
}

struct Shared {
    docker: Docker,
    settings: SandboxSettings,
    pool: Pool,
    /// Held while the pool is being filled or drained, so two fillers do not overshoot.
    filling: tokio::sync::Mutex<()>,
    /// Set by `drain_pool` (shutdown): no more refills.
    pool_closed: std::sync::atomic::AtomicBool,
    /// The addresses of a remote engine's host, which the egress proxy never opens.
    engine_addresses: Vec<std::net::IpAddr>,
}

impl std::fmt::Debug for Sandboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandboxes")
            .field("settings", &self.shared.settings)
            .finish()
    }
}

impl Sandboxes {
    /// Connects to the engine the environment names as the `docker` CLI reads it
    /// (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`; the local socket by default).
    pub async fn connect(settings: SandboxSettings) -> Result<Sandboxes, SandboxError> {
        Self::connect_to(&DockerEndpoint::from_env()?, settings).await
    }

    /// Connects to `endpoint`, agrees on an API version both speak, and checks that the engine
    /// answers.
    pub async fn connect_to(
        endpoint: &DockerEndpoint,
        settings: SandboxSettings,
    ) -> Result<Sandboxes, SandboxError> {
        let docker = endpoint.client()?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| endpoint.explain(&e))?;
        docker.ping().await.map_err(|e| endpoint.explain(&e))?;
        let engine_addresses = engine_addresses(endpoint.address()).await;
        Ok(Sandboxes {
            shared: Arc::new(Shared {
                docker,
                settings,
                pool: Pool::default(),
                filling: tokio::sync::Mutex::new(()),
                pool_closed: std::sync::atomic::AtomicBool::new(false),
                engine_addresses,
            }),
        })
    }

    pub fn settings(&self) -> &SandboxSettings {
        &self.shared.settings
    }

    /// The addresses of the engine's host when it is reached over TCP (none for a socket).
    pub fn engine_addresses(&self) -> &[std::net::IpAddr] {
        &self.shared.engine_addresses
    }

    /// The engine client, for callers that need to look at containers themselves (tests).
    pub fn docker(&self) -> &Docker {
        &self.shared.docker
    }

    /// Whether the sandbox image is present on the engine.
    pub async fn image_present(&self) -> Result<bool, SandboxError> {
        match self
            .shared
            .docker
            .inspect_image(&self.shared.settings.image)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(SandboxError::docker("inspecting the sandbox image")(e)),
        }
    }

    /// A sandbox for `run_id` with `repo_dir` (its working tree and `.git`) in `/workspace`,
    /// from the warm pool when one is waiting there. No network: the egress proxy
    /// (`crate::egress`) is the only way out, for runs whose repository asks for it.
    pub async fn create(&self, run_id: &str, repo_dir: &Path) -> Result<Sandbox, SandboxError> {
        let settings = &self.shared.settings;
        let docker = &self.shared.docker;
        let name = container::container_name(run_id);
        let (id, from_pool) = match self.take_warm() {
            Some(id) => (id, true),
            None => (self.create_container(run_id, &name).await?, false),
        };
        // From here on, the guard in `Sandbox` removes the container on every way out.
        let mut sandbox = Sandbox::new(docker.clone(), id, run_id, settings);
        // A cold container must run before anything can be exec'd into its tmpfs; a warm one,
        // already running, takes the run's name (its labels say `warm-pool`) while the
        // repository goes in.
        let ready = if from_pool {
            let rename = RenameContainerOptionsBuilder::new().name(&name).build();
            let renamed = async {
                docker
                    .rename_container(sandbox.id(), rename)
                    .await
                    .map_err(SandboxError::docker("naming a warm sandbox"))
            };
            let copied =
                tar_stream::copy_in(docker, sandbox.id(), repo_dir, settings.workspace_share());
            let (renamed, copied) = tokio::join!(renamed, copied);
            renamed.and(copied)
        } else {
            match docker
                .start_container(sandbox.id(), None::<StartContainerOptions>)
                .await
            {
                Ok(()) => {
                    tar_stream::copy_in(docker, sandbox.id(), repo_dir, settings.workspace_share())
                        .await
                }
                Err(e) => Err(SandboxError::docker("starting a sandbox")(e)),
            }
        };
        if let Err(e) = ready {
            sandbox.remove_now().await;
            return Err(e);
        }
        sandbox.arm_run_limit();
        // Also after a cold start: the pool may have been empty or stale.
        self.refill_in_background();
        tracing::debug!(run = run_id, container = %sandbox.id(), from_pool, "sandbox ready");
        Ok(sandbox)
    }

    /// Creates (and, for the pool, starts) a container; removes it again on failure.
    async fn create_container(&self, run_label: &str, name: &str) -> Result<String, SandboxError> {
        let settings = &self.shared.settings;
        let docker = &self.shared.docker;
        let definition = container::definition(settings, run_label);
        let create = CreateContainerOptionsBuilder::new().name(name).build();
        let created = docker
            .create_container(Some(create), definition)
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    SandboxError::ImageMissing {
                        image: settings.image.clone(),
                    }
                } else {
                    SandboxError::docker("creating a sandbox")(e)
                }
            })?;
        Ok(created.id)
    }

    fn take_warm(&self) -> Option<String> {
        let (warm, stale) = self.shared.pool.take();
        if !stale.is_empty() {
            let docker = self.shared.docker.clone();
            let remove = async move {
                for id in stale {
                    let _ = container::remove(&docker, &id).await;
                }
            };
            tokio::spawn(remove.instrument(tracing::info_span!("remove_stale_warm")));
        }
        warm
    }

    /// Fills the warm pool up to `settings.warm_pool` started containers. Returns its size.
    pub async fn warm_up(&self) -> Result<usize, SandboxError> {
        let _one_filler = self.shared.filling.lock().await;
        while self.shared.pool.count() < self.shared.settings.warm_pool
            && !self.shared.pool_closed.load(Ordering::SeqCst)
        {
            let name = container::container_name(container::POOL_RUN);
            let id = self.create_container(container::POOL_RUN, &name).await?;
            let started = self
                .shared
                .docker
                .start_container(&id, None::<StartContainerOptions>)
                .await;
            if let Err(e) = started {
                let _ = container::remove(&self.shared.docker, &id).await;
                return Err(SandboxError::docker("starting a warm sandbox")(e));
            }
            self.shared.pool.put(id);
        }
        Ok(self.shared.pool.count())
    }

    fn refill_in_background(&self) {
        if self.shared.settings.warm_pool == 0 {
            return;
        }
        let sandboxes = self.clone();
        let refill = async move {
            if let Err(e) = sandboxes.warm_up().await {
                tracing::warn!(error = %e, "could not refill the warm sandbox pool");
            }
        };
        tokio::spawn(refill.instrument(tracing::info_span!("warm_pool_refill")));
    }

    /// Removes the warm containers nobody took and stops refilling (at shutdown). Returns
    /// how many were removed.
    pub async fn drain_pool(&self) -> Result<usize, SandboxError> {
        self.shared.pool_closed.store(true, Ordering::SeqCst);
        let _no_filler = self.shared.filling.lock().await;
        let ids = self.shared.pool.drain();
        for id in &ids {
            container::remove(&self.shared.docker, id).await?;
        }
        Ok(ids.len())
    }

    /// At shutdown, after running jobs had their grace period: removes the warm pool and every
    /// container this instance still has. Returns how many containers were removed.
    pub async fn shutdown(&self) -> Result<usize, SandboxError> {
        let mut removed = self.drain_pool().await?;
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!(
                "{}={}",
                container::LABEL_INSTANCE,
                self.shared.settings.instance_id
            )],
        )]);
        let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let own = self
            .shared
            .docker
            .list_containers(Some(options))
            .await
            .map_err(SandboxError::docker("listing sandboxes"))?;
        for id in own.into_iter().filter_map(|c| c.id) {
            container::remove(&self.shared.docker, &id).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// How many warm containers are waiting.
    pub fn warm_count(&self) -> usize {
        self.shared.pool.count()
    }

    /// Removes orphans: containers of an instance that is gone, and any older than the run
    /// limit. Returns how many were removed.
    pub async fn reap(&self) -> Result<usize, SandboxError> {
        reaper::reap(
            &self.shared.docker,
            &self.shared.settings.instance_id,
            self.shared.settings.run_timeout + REAP_GRACE,
        )
        .await
    }

    /// Reaps now and then every `every`, until the handle is aborted.
    pub fn spawn_reaper(&self, every: Duration) -> JoinHandle<()> {
        let sandboxes = self.clone();
        let reap = async move {
            loop {
                match sandboxes.reap().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "reaped orphan sandboxes"),
                    Err(e) => tracing::warn!(error = %e, "sandbox reaper pass failed"),
                }
                tokio::time::sleep(every).await;
            }
        };
        tokio::spawn(reap.instrument(tracing::info_span!("sandbox_reaper")))
    }

    /// Ids of the containers (running or not) of `run_id`: labelled with it, or taken from
    /// the warm pool and named after it.
    pub async fn containers_of_run(&self, run_id: &str) -> Result<Vec<String>, SandboxError> {
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![container::LABEL_RUN.to_string()],
        )]);
        let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .shared
            .docker
            .list_containers(Some(options))
            .await
            .map_err(SandboxError::docker("listing sandboxes"))?;
        let prefix = format!("/{}", container::name_prefix(run_id));
        Ok(list
            .into_iter()
            .filter(|c| {
                let labelled = c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(container::LABEL_RUN))
                    .is_some_and(|r| r == run_id);
                let named = c.names.iter().flatten().any(|n| n.starts_with(&prefix));
                labelled || named
            })
            .filter_map(|c| c.id)
            .collect())
    }
}

/// The addresses `tcp://host:port` or `https://host:port` resolves to.
async fn engine_addresses(address: &str) -> Vec<std::net::IpAddr> {
    let Ok(url) = url::Url::parse(address) else {
        return vec![];
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return vec![];
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let found = tokio::net::lookup_host((host.as_str(), port)).await;
    found
        .map(|addrs| addrs.map(|a| a.ip()).collect())
        .unwrap_or_default()
}
