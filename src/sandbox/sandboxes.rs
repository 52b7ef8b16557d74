//! The engine connection and the settings every sandbox is made with: creating sandboxes,
//! listing a run's containers, and reaping orphans.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{
    CreateContainerOptionsBuilder, StartContainerOptions, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use tokio::task::JoinHandle;

use super::archive;
use super::container;
use super::error::{is_not_found, SandboxError};
use super::exec::WORKSPACE;
use super::handle::Sandbox;
use super::reaper;
use super::settings::SandboxSettings;

/// A run's containers are reaped this long after the run limit, whoever owns them.
const REAP_GRACE: Duration = Duration::from_secs(300);

/// How to create a sandbox beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Join the setup network, for a repository's setup commands. Call
    /// [`Sandbox::cut_network`] before the agent runs anything.
    pub network: bool,
}

/// The Docker engine and the settings every sandbox is made with. Cheap to clone.
#[derive(Clone)]
pub struct Sandboxes {
    shared: Arc<Shared>,
}

struct Shared {
    docker: Docker,
    settings: SandboxSettings,
}

impl std::fmt::Debug for Sandboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandboxes")
            .field("settings", &self.shared.settings)
            .finish()
    }
}

impl Sandboxes {
    /// Connects to the engine named by `DOCKER_HOST` (or the local socket), agrees on an API
    /// version both speak, and checks that the engine answers.
    pub async fn connect(settings: SandboxSettings) -> Result<Sandboxes, SandboxError> {
        let docker = Docker::connect_with_defaults().map_err(SandboxError::Connect)?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(SandboxError::Connect)?;
        docker.ping().await.map_err(SandboxError::Connect)?;
        Ok(Sandboxes {
            shared: Arc::new(Shared { docker, settings }),
        })
    }

    pub fn settings(&self) -> &SandboxSettings {
        &self.shared.settings
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

    /// A sandbox for `run_id` with `repo_dir` (its working tree and `.git`) in `/workspace`.
    /// No network.
    pub async fn create(&self, run_id: &str, repo_dir: &Path) -> Result<Sandbox, SandboxError> {
        self.create_with(run_id, repo_dir, CreateOptions::default())
            .await
    }

    /// A sandbox as [`Sandboxes::create`], with options.
    pub async fn create_with(
        &self,
        run_id: &str,
        repo_dir: &Path,
        options: CreateOptions,
    ) -> Result<Sandbox, SandboxError> {
        let settings = &self.shared.settings;
        let docker = &self.shared.docker;
        let repo = repo_dir.to_path_buf();
        let packing = tokio::task::spawn_blocking(move || archive::pack_dir(&repo));

        let name = container::container_name(run_id);
        let definition = container::definition(settings, run_id, options.network);
        let create = CreateContainerOptionsBuilder::new().name(&name).build();
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
        // From here on, the guard in `Sandbox` removes the container on every way out.
        let mut sandbox = Sandbox::new(docker.clone(), created.id, run_id, settings);
        let tar = packing
            .await
            .map_err(|e| SandboxError::Invalid(format!("packing the repository: {e}")))?
            .map_err(SandboxError::io(format!(
                "packing the repository at {}",
                repo_dir.display()
            )))?;
        let upload = UploadToContainerOptionsBuilder::new()
            .path(WORKSPACE)
            .build();
        let uploaded =
            docker.upload_to_container(sandbox.id(), Some(upload), bollard::body_full(tar.into()));
        let started = docker.start_container(sandbox.id(), None::<StartContainerOptions>);
        let (uploaded, started) = tokio::join!(uploaded, started);
        if let Err(e) = started.map_err(SandboxError::docker("starting a sandbox")) {
            sandbox.remove_now().await;
            return Err(e);
        }
        if let Err(e) = uploaded.map_err(SandboxError::docker("copying the repository in")) {
            sandbox.remove_now().await;
            return Err(e);
        }
        sandbox.arm_run_limit();
        tracing::debug!(run = run_id, container = %sandbox.id(), "sandbox ready");
        Ok(sandbox)
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
        tokio::spawn(async move {
            loop {
                match sandboxes.reap().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "reaped orphan sandboxes"),
                    Err(e) => tracing::warn!(error = %e, "sandbox reaper pass failed"),
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Ids of the containers (running or not) labelled with `run_id`.
    pub async fn containers_of_run(&self, run_id: &str) -> Result<Vec<String>, SandboxError> {
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!("{}={run_id}", container::LABEL_RUN)],
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
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }
}
