//! The container templates spo-selinux ships (written by us, in CIL, as data in the crate).
//!
//! A SelinuxProfile names them in `spec.inherit` as `{kind: System, name: ...}`; the rendered
//! profile block says `(blockinherit <name>)`. Both are abstract blocks in one policy module,
//! [`TEMPLATES_MODULE`], which the installer puts in the store before any profile.
//!
//! | template | what it gives the profile's process type |
//! | --- | --- |
//! | `container` | declares `process` (role `system_r`), adds it to `domain`, `container_domain`, `container_system_domain`, `mcs_constrained_type` and `svirt_sandbox_domain`, and allows the basics: its own processes, fifos and unix sockets, `/proc` and `/sys` reads, the runtime's device nodes, the container's own files |
//! | `net_container` | adds `container_net_domain` and `sandbox_net_domain` (TCP/UDP/netlink sockets, binding and connecting to ports) and reading the resolver configuration; inherit it next to `container` |
//!
//! They compile against Debian's refpolicy plus refpolicy's `container` module and the
//! two-attribute shim (see `scripts/selinux-base`).

use crate::render::{ModuleOrigin, RenderedModule};

/// The policy module holding the shipped templates. Its name has an `_`, which no Kubernetes
/// object name has, so no profile module can take it.
pub const TEMPLATES_MODULE: &str = "spo_templates";

/// A template shipped with the crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    /// The block name, which `spec.inherit[].name` refers to.
    pub name: &'static str,
    /// Whether the block declares the `process` type (a base template); the others add to it.
    pub declares_process: bool,
    /// One line for listings.
    pub summary: &'static str,
    /// The CIL text (one abstract block).
    pub cil: &'static str,
}

/// The shipped templates.
pub const TEMPLATES: &[Template] = &[
    Template {
        name: "container",
        declares_process: true,
        summary: "the process type of a confined container with the basic access it needs",
        cil: include_str!("../templates/container.cil"),
    },
    Template {
        name: "net_container",
        declares_process: false,
        summary: "network access, added to a profile that also inherits container",
        cil: include_str!("../templates/net_container.cil"),
    },
];

/// The shipped template called `name`.
pub fn template(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// The names of the shipped templates.
pub fn template_names() -> impl Iterator<Item = &'static str> + Clone {
    TEMPLATES.iter().map(|t| t.name)
}

/// The templates module: every shipped template, in the order of [`TEMPLATES`].
pub fn templates_module() -> RenderedModule {
    let mut text = String::new();
    for t in TEMPLATES {
        text.push_str(t.cil);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    RenderedModule {
        name: TEMPLATES_MODULE.to_owned(),
        origin: ModuleOrigin::Support,
        text,
        lines: Vec::new(),
        requires: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cil::parse;

    #[test]
    fn each_template_is_one_abstract_block_of_its_name() {
        for t in TEMPLATES {
            let exprs = parse(t.cil).expect(t.name);
            assert_eq!(exprs.len(), 1, "{}", t.name);
            let items = exprs[0].as_list().expect("list");
            assert_eq!(exprs[0].keyword(), Some("block"));
            assert_eq!(items[1].as_symbol(), Some(t.name));
            let abstract_ = items
                .iter()
                .filter(|i| i.keyword() == Some("blockabstract"))
                .filter_map(|i| i.as_list()?.get(1)?.as_symbol())
                .collect::<Vec<_>>();
            assert_eq!(abstract_, vec![t.name]);
            let declares = items.iter().any(|i| {
                i.keyword() == Some("type") && i.as_list().and_then(|l| l.get(1)?.as_symbol()) == Some("process")
            });
            assert_eq!(declares, t.declares_process, "{}", t.name);
        }
    }
}
