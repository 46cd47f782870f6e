//! The install port: policy modules in a SELinux policy store.
//!
//! [`ModuleStore`] is the port (list, install, remove); [`Semodule`] is the real one, running
//! `semodule [-p <root>] -s <store> [-n] -X 420 -i <name>.cil ...`. [`SelinuxNode`] holds the
//! decisions: the shipped templates go in with the first profile, a module whose installed
//! checksum already equals the rendered text's SHA-256 is not installed again (so the policy
//! is not rebuilt or reloaded when nothing changed), and a module name that the store already
//! has at another priority belongs to someone else and is refused rather than overridden.
//!
//! Modules spo-selinux installs live at priority [`MODULE_PRIORITY`], which is how it tells
//! its own modules from the system's.
//!
//! Every semodule run goes through the one runner (`spo_hostio::ToolCommand`) with a deadline:
//! [`SEMODULE_TIMEOUT`] for a transaction, [`SEMODULE_LIST_TIMEOUT`] for a listing, both
//! fields of [`Semodule`]. Installing many profiles at once is [`SelinuxNode::install_modules`]
//! (in `batch`): one transaction for the whole batch, refused modules isolated.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use spo_hostio::ToolCommand;
use spo_model::ProfileState;
use spo_model::contract::{InstallOutcome, RemoveOutcome};

use crate::error::SelinuxError;
use crate::render::RenderedModule;
use crate::templates::{TEMPLATES_MODULE, templates_module};
use crate::validate::{find_program, module_list, rejection, scratch_dir, tool_message, write_module};

/// The priority of every module spo-selinux installs (semodule's default is 400, Debian's
/// modules are at 100); a module at another priority is not ours.
pub const MODULE_PRIORITY: u16 = 420;

/// How long one semodule transaction (install or remove) may take by default before its
/// process group is killed. A transaction rebuilds the whole policy: about 5 s here for one
/// module on a quiet machine, 8-13 s for a batch of 20 with other builds running (see
/// docs/benchmarks.md). Three minutes only ever stops a hung semodule, and bounds how long a
/// daemon thread can wait on one.
pub const SEMODULE_TIMEOUT: Duration = Duration::from_secs(180);

/// How long `semodule --list-modules=full --checksum` may take by default (under 1 s here).
pub const SEMODULE_LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// One module in a store listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledModule {
    /// Its priority.
    pub priority: u16,
    /// Its name.
    pub name: String,
    /// `sha256:<hex>` of its source as installed, when the store reports it.
    pub checksum: Option<String>,
}

/// A SELinux policy store (a port: tests use a fake, nodes use [`Semodule`]).
pub trait ModuleStore: Send + Sync {
    /// Every module in the store, at every priority.
    fn list(&self) -> Result<Vec<InstalledModule>, SelinuxError>;
    /// Installs `modules` at [`MODULE_PRIORITY`] in one transaction.
    fn install(&self, modules: &[RenderedModule]) -> Result<(), SelinuxError>;
    /// Removes the modules `names` from [`MODULE_PRIORITY`] in one transaction.
    fn remove(&self, names: &[String]) -> Result<(), SelinuxError>;
}

/// The real store: the `semodule` program.
#[derive(Clone, Debug)]
pub struct Semodule {
    /// The program.
    pub program: PathBuf,
    /// `-p`: an alternative policy root (tests use a copy of the system store in a temp dir).
    pub root: Option<PathBuf>,
    /// `-s`: the store name, such as `default`.
    pub store: String,
    /// Whether to load the new policy into the kernel after a change (`-n` when false).
    pub reload: bool,
    /// How long one transaction may take ([`SEMODULE_TIMEOUT`] by default).
    pub timeout: Duration,
    /// How long one listing may take ([`SEMODULE_LIST_TIMEOUT`] by default).
    pub list_timeout: Duration,
}

impl Semodule {
    /// semodule from PATH on store `store`, optionally under the policy root `root`.
    pub fn new(root: Option<PathBuf>, store: &str, reload: bool) -> Result<Self, SelinuxError> {
        let program = find_program("semodule").ok_or_else(|| SelinuxError::Toolchain {
            what: "semodule".to_owned(),
            hint: "install the policycoreutils package".to_owned(),
        })?;
        Ok(Semodule {
            program,
            root,
            store: store.to_owned(),
            reload,
            timeout: SEMODULE_TIMEOUT,
            list_timeout: SEMODULE_LIST_TIMEOUT,
        })
    }

    /// The same, with these deadlines for transactions and listings.
    pub fn with_timeouts(mut self, transaction: Duration, list: Duration) -> Self {
        self.timeout = transaction;
        self.list_timeout = list;
        self
    }

    fn base_args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        if let Some(root) = &self.root {
            args.push("-p".into());
            args.push(root.clone().into_os_string());
        }
        args.push("-s".into());
        args.push(self.store.clone().into());
        args
    }

    /// Runs semodule with `args` for `step` (such as `installing policy module a with
    /// semodule`); a refusal names the module of `modules` semodule's message points at, with
    /// the scratch directory `tmp` cut from the message.
    fn run(
        &self,
        step: String,
        args: Vec<OsString>,
        timeout: Duration,
        modules: &[RenderedModule],
        tmp: Option<&Path>,
    ) -> Result<String, SelinuxError> {
        let output = ToolCommand::new(&self.program, timeout)
            .args(args)
            .run()
            .map_err(|source| SelinuxError::Tool {
                step: step.clone(),
                source,
            })?;
        if output.success() && output.stdout_truncated {
            // A cut listing would make modules look absent.
            return Err(SelinuxError::ToolOutput {
                tool: "semodule",
                message: format!("{step}: the output is longer than the runner keeps"),
            });
        }
        if output.success() {
            return Ok(output.stdout_text());
        }
        let mut message = tool_message(&output);
        if let Some(tmp) = tmp {
            message = message.replace(&format!("{}/", tmp.display()), "");
        }
        Err(rejection("semodule", modules, message))
    }
}

/// Parses `semodule --list-modules=full --checksum` output: `<prio> <name> <lang> [sha256:<hex>]`.
pub fn parse_listing(text: &str) -> Result<Vec<InstalledModule>, SelinuxError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.split_whitespace();
        let (Some(prio), Some(name)) = (fields.next(), fields.next()) else {
            return Err(SelinuxError::ToolOutput {
                tool: "semodule",
                message: format!("unexpected listing line {line:?}"),
            });
        };
        let priority = prio.parse().map_err(|_| SelinuxError::ToolOutput {
            tool: "semodule",
            message: format!("unexpected priority in listing line {line:?}"),
        })?;
        let checksum = fields.find(|f| f.starts_with("sha256:")).map(str::to_owned);
        out.push(InstalledModule {
            priority,
            name: name.to_owned(),
            checksum,
        });
    }
    Ok(out)
}

impl ModuleStore for Semodule {
    fn list(&self) -> Result<Vec<InstalledModule>, SelinuxError> {
        let mut args = self.base_args();
        args.push("--list-modules=full".into());
        args.push("--checksum".into());
        let step = "listing policy modules with semodule".to_owned();
        parse_listing(&self.run(step, args, self.list_timeout, &[], None)?)
    }

    fn install(&self, modules: &[RenderedModule]) -> Result<(), SelinuxError> {
        let dir = scratch_dir("spo-semodule-")?;
        let mut args = self.base_args();
        if !self.reload {
            args.push("-n".into());
        }
        args.push("-X".into());
        args.push(MODULE_PRIORITY.to_string().into());
        for m in modules {
            args.push("-i".into());
            args.push(write_module(&dir, m)?.into_os_string());
        }
        let step = format!("installing {} with semodule", module_list(modules));
        self.run(step, args, self.timeout, modules, Some(dir.path())).map(drop)
    }

    fn remove(&self, names: &[String]) -> Result<(), SelinuxError> {
        let mut args = self.base_args();
        if !self.reload {
            args.push("-n".into());
        }
        args.push("-X".into());
        args.push(MODULE_PRIORITY.to_string().into());
        for n in names {
            args.push("-r".into());
            args.push(n.into());
        }
        let what = match names {
            [one] => format!("policy module {one}"),
            _ => format!("{} policy modules", names.len()),
        };
        let step = format!("removing {what} with semodule");
        self.run(step, args, self.timeout, &[], None)
            .map(drop)
            .map_err(|e| match e {
                // semodule's message does not say which module it could not remove.
                SelinuxError::Rejected {
                    tool,
                    location,
                    message,
                    ..
                } => SelinuxError::Rejected {
                    tool,
                    subject: what,
                    location,
                    message,
                },
                other => other,
            })
    }
}

/// How a module must be in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Installed by us with exactly this text (profiles, the templates).
    Exact,
    /// Present at any priority (modules the node may already provide, such as `container`).
    Present,
}

/// What [`plan_install`] decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallPlan {
    /// Indexes of the wanted modules to install.
    pub install: Vec<usize>,
    /// Names already as wanted.
    pub unchanged: Vec<String>,
}

/// Decides which of `wanted` to install given the store `listing` (pure).
pub fn plan_install(
    listing: &[InstalledModule],
    wanted: &[(&RenderedModule, Want)],
) -> Result<InstallPlan, SelinuxError> {
    let mut by_name: BTreeMap<&str, Vec<&InstalledModule>> = BTreeMap::new();
    for m in listing {
        by_name.entry(m.name.as_str()).or_default().push(m);
    }
    let mut plan = InstallPlan::default();
    for (i, (module, want)) in wanted.iter().enumerate() {
        let entries = by_name.get(module.name.as_str()).map(Vec::as_slice).unwrap_or_default();
        let ours = entries.iter().find(|m| m.priority == MODULE_PRIORITY);
        let foreign = entries.iter().find(|m| m.priority != MODULE_PRIORITY);
        match want {
            Want::Present if !entries.is_empty() => plan.unchanged.push(module.name.clone()),
            Want::Present => plan.install.push(i),
            Want::Exact => {
                if let Some(f) = foreign {
                    return Err(SelinuxError::ForeignModule {
                        name: module.name.clone(),
                        priority: f.priority,
                    });
                }
                let current = ours.and_then(|m| m.checksum.as_deref());
                if current == Some(format!("sha256:{}", module.sha256()).as_str()) {
                    plan.unchanged.push(module.name.clone());
                } else {
                    plan.install.push(i);
                }
            }
        }
    }
    Ok(plan)
}

/// Receives a module's node state as an install proceeds: `InProgress` before the store is
/// changed (semodule takes seconds), then `Installed` or `Error`.
pub type StatusSink = Arc<dyn Fn(&str, ProfileState) + Send + Sync>;

/// A node's policy store as the SELinux backends' install target.
#[derive(Clone)]
pub struct SelinuxNode {
    pub(crate) store: Arc<dyn ModuleStore>,
    pub(crate) extras: Vec<RenderedModule>,
    status: Option<StatusSink>,
}

impl fmt::Debug for SelinuxNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelinuxNode")
            .field("extras", &self.extras)
            .finish_non_exhaustive()
    }
}

impl SelinuxNode {
    /// A node whose modules live in `store`.
    pub fn new(store: Arc<dyn ModuleStore>) -> Self {
        SelinuxNode {
            store,
            extras: Vec::new(),
            status: None,
        }
    }

    /// Modules to install with the first profile when the store has none of that name at
    /// any priority (for Debian nodes: refpolicy's `container` module and the shim).
    pub fn with_extra_modules(mut self, extras: Vec<RenderedModule>) -> Self {
        self.extras = extras;
        self
    }

    /// Where to report `InProgress`/`Installed`/`Error` while installing.
    pub fn with_status_sink(mut self, sink: StatusSink) -> Self {
        self.status = Some(sink);
        self
    }

    pub(crate) fn report(&self, name: &str, state: ProfileState) {
        if let Some(sink) = &self.status {
            sink(name, state);
        }
    }

    /// Installs `module` (with the templates and extras it needs) unless the store already
    /// holds it as is; the store is not touched, and the policy not rebuilt, when nothing
    /// changed.
    pub fn install_module(&self, module: &RenderedModule) -> Result<InstallOutcome, SelinuxError> {
        let templates = templates_module();
        let mut wanted: Vec<(&RenderedModule, Want)> = self.extras.iter().map(|m| (m, Want::Present)).collect();
        wanted.push((&templates, Want::Exact));
        wanted.push((module, Want::Exact));
        let result = self.store.list().and_then(|listing| plan_install(&listing, &wanted));
        let plan = match result {
            Ok(p) => p,
            Err(e) => {
                self.report(&module.name, ProfileState::Error);
                return Err(e);
            }
        };
        if plan.install.is_empty() {
            self.report(&module.name, ProfileState::Installed);
            return Ok(InstallOutcome::Unchanged);
        }
        self.report(&module.name, ProfileState::InProgress);
        let batch: Vec<RenderedModule> = plan.install.iter().map(|&i| wanted[i].0.clone()).collect();
        match self.store.install(&batch) {
            Ok(()) => {
                self.report(&module.name, ProfileState::Installed);
                Ok(InstallOutcome::Written)
            }
            Err(e) => {
                self.report(&module.name, ProfileState::Error);
                Err(e)
            }
        }
    }

    /// Removes the module `name` when we installed it; a module of that name at another
    /// priority is not ours and is left alone.
    pub fn remove_module(&self, name: &str) -> Result<RemoveOutcome, SelinuxError> {
        let listing = self.store.list()?;
        if listing.iter().any(|m| m.name == name && m.priority == MODULE_PRIORITY) {
            self.store.remove(&[name.to_owned()])?;
            Ok(RemoveOutcome::Removed)
        } else {
            Ok(RemoveOutcome::NotPresent)
        }
    }

    /// The profiles installed by spo-selinux (every module at [`MODULE_PRIORITY`] but the
    /// templates and the extra modules), sorted.
    pub fn list_profiles(&self) -> Result<Vec<String>, SelinuxError> {
        let mut names: Vec<String> = self
            .store
            .list()?
            .into_iter()
            .filter(|m| m.priority == MODULE_PRIORITY && m.name != TEMPLATES_MODULE)
            .filter(|m| !self.extras.iter().any(|e| e.name == m.name))
            .map(|m| m.name)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::ModuleOrigin;
    use std::sync::Mutex;

    fn module(name: &str, text: &str) -> RenderedModule {
        RenderedModule {
            name: name.into(),
            origin: ModuleOrigin::Selinux,
            text: text.into(),
            lines: Vec::new(),
            requires: Vec::new(),
        }
    }

    /// A store in memory that counts transactions.
    #[derive(Default)]
    struct FakeStore {
        modules: Mutex<Vec<InstalledModule>>,
        transactions: Mutex<Vec<Vec<String>>>,
    }

    impl ModuleStore for FakeStore {
        fn list(&self) -> Result<Vec<InstalledModule>, SelinuxError> {
            Ok(self.modules.lock().expect("lock").clone())
        }
        fn install(&self, modules: &[RenderedModule]) -> Result<(), SelinuxError> {
            let mut all = self.modules.lock().expect("lock");
            for m in modules {
                all.retain(|x| !(x.name == m.name && x.priority == MODULE_PRIORITY));
                all.push(InstalledModule {
                    priority: MODULE_PRIORITY,
                    name: m.name.clone(),
                    checksum: Some(format!("sha256:{}", m.sha256())),
                });
            }
            self.transactions
                .lock()
                .expect("lock")
                .push(modules.iter().map(|m| m.name.clone()).collect());
            Ok(())
        }
        fn remove(&self, names: &[String]) -> Result<(), SelinuxError> {
            self.modules
                .lock()
                .expect("lock")
                .retain(|m| !(names.contains(&m.name) && m.priority == MODULE_PRIORITY));
            self.transactions
                .lock()
                .expect("lock")
                .push(vec![format!("-{}", names.join(","))]);
            Ok(())
        }
    }

    #[test]
    fn installs_templates_once_and_nothing_when_unchanged() {
        let store = Arc::new(FakeStore::default());
        store.modules.lock().expect("lock").push(InstalledModule {
            priority: 100,
            name: "container".into(),
            checksum: None,
        });
        let states = Arc::new(Mutex::new(Vec::new()));
        let sink_states = states.clone();
        let node = SelinuxNode::new(store.clone())
            .with_extra_modules(vec![module("container", "(x)"), module("shim", "(y)")])
            .with_status_sink(Arc::new(move |n, s| {
                sink_states.lock().expect("lock").push((n.to_owned(), s))
            }));
        let a = module("a", "(block a)\n");
        assert_eq!(node.install_module(&a).expect("install"), InstallOutcome::Written);
        assert_eq!(node.install_module(&a).expect("again"), InstallOutcome::Unchanged);
        let b = module("a", "(block a (typepermissive process))\n");
        assert_eq!(node.install_module(&b).expect("changed"), InstallOutcome::Written);
        assert_eq!(
            *store.transactions.lock().expect("lock"),
            vec![
                vec!["shim".to_owned(), TEMPLATES_MODULE.to_owned(), "a".to_owned()],
                vec!["a".to_owned()]
            ],
            "the node's own container module is kept; unchanged modules are not reinstalled"
        );
        assert_eq!(node.list_profiles().expect("list"), vec!["a".to_owned()]);
        assert_eq!(node.remove_module("a").expect("remove"), RemoveOutcome::Removed);
        assert_eq!(node.remove_module("a").expect("again"), RemoveOutcome::NotPresent);
        assert_eq!(
            node.remove_module("container").expect("foreign"),
            RemoveOutcome::NotPresent
        );
        let seen: Vec<ProfileState> = states.lock().expect("lock").iter().map(|(_, s)| *s).collect();
        assert_eq!(
            seen,
            vec![
                ProfileState::InProgress,
                ProfileState::Installed,
                ProfileState::Installed,
                ProfileState::InProgress,
                ProfileState::Installed
            ]
        );
    }

    #[test]
    fn refuses_to_override_a_system_module() {
        let store = Arc::new(FakeStore::default());
        store.modules.lock().expect("lock").push(InstalledModule {
            priority: 100,
            name: "apache".into(),
            checksum: None,
        });
        let node = SelinuxNode::new(store.clone());
        let err = node
            .install_module(&module("apache", "(block apache)"))
            .expect_err("foreign");
        assert!(
            matches!(err, SelinuxError::ForeignModule { priority: 100, .. }),
            "{err}"
        );
        assert!(store.transactions.lock().expect("lock").is_empty());
    }

    #[test]
    fn listing() {
        let l = parse_listing("100 base  cil  sha256:ab \n420 nginx cil sha256:cd\n\n").expect("parse");
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].checksum.as_deref(), Some("sha256:cd"));
        assert!(parse_listing("x base cil").is_err());
    }
}
