//! Merge rules of DESIGN.md §5, one test per rule, against real files in a temporary home.

use std::fs;
use std::path::Path;

use bottle_core::spec::{EnvValue, RepoKey};
use bottle_manifest::{Catalog, Layout, ResolvedBottles};

struct Home(tempfile::TempDir);

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("bottles")).expect("mkdir");
        fs::create_dir_all(dir.path().join("agents")).expect("mkdir");
        Self(dir)
    }

    fn bottle(&self, name: &str, front: &str) -> &Self {
        fs::write(self.0.path().join(format!("bottles/{name}.md")), format!("---\n{front}---\n")).expect("write");
        self
    }

    fn catalog(&self) -> Catalog {
        Catalog::scan(Layout {
            home: self.0.path().to_path_buf(),
            cwd: self.0.path().join("nowhere"),
            skills_dir: self.0.path().join("skills"),
        })
        .expect("scan")
    }

    fn resolve(&self, names: &[&str]) -> ResolvedBottles {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        self.catalog().resolve_bottles(&names).expect("resolves")
    }
}

fn literal(r: &ResolvedBottles, key: &str) -> String {
    match &r.spec.env[key].value {
        EnvValue::Literal { value } => value.clone(),
        other => panic!("{key} is {other:?}"),
    }
}

fn file_of(path: &Path) -> String {
    path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned()
}

#[test]
fn env_is_merged_per_key_child_wins() {
    let h = Home::new();
    h.bottle("parent", "env:\n  A: parent\n  B: parent\n")
        .bottle("child", "extends: parent\nenv:\n  B: child\n  C: child\n");
    let r = h.resolve(&["child"]);
    assert_eq!(
        (literal(&r, "A"), literal(&r, "B"), literal(&r, "C")),
        ("parent".into(), "child".into(), "child".into())
    );
    assert_eq!(file_of(&r.spec.env["A"].origin.location.path), "parent.md");
    assert_eq!(file_of(&r.spec.env["B"].origin.location.path), "child.md");
}

#[test]
fn parents_fold_left_to_right_then_child() {
    let h = Home::new();
    h.bottle("a", "env:\n  X: a\n  Y: a\n  Z: a\n")
        .bottle("b", "env:\n  X: b\n  Y: b\n")
        .bottle("c", "extends: [a, b]\nenv:\n  X: c\n");
    let r = h.resolve(&["c"]);
    assert_eq!(r.chain, ["a", "b", "c"]);
    assert_eq!((literal(&r, "X"), literal(&r, "Y"), literal(&r, "Z")), ("c".into(), "b".into(), "a".into()));
}

#[test]
fn diamonds_fold_the_shared_ancestor_once() {
    let h = Home::new();
    h.bottle("root", "egress:\n  routes:\n    - host: r.example.com\n")
        .bottle("left", "extends: root\nenv:\n  SIDE: left\n")
        .bottle("right", "extends: root\nenv:\n  SIDE: right\n")
        .bottle("top", "extends: [left, right]\n");
    let r = h.resolve(&["top"]);
    assert_eq!(r.chain, ["root", "left", "right", "top"]);
    assert_eq!(literal(&r, "SIDE"), "right");
    assert_eq!(r.spec.egress.routes.len(), 1);
}

#[test]
fn several_bottles_merge_in_the_order_given() {
    let h = Home::new();
    h.bottle("base", "env:\n  WHO: base\n")
        .bottle("one", "extends: base\nenv:\n  WHO: one\n")
        .bottle("two", "extends: base\nenv:\n  WHO: two\n");
    assert_eq!(h.resolve(&["one", "two"]).chain, ["base", "one", "two"]);
    assert_eq!(literal(&h.resolve(&["one", "two"]), "WHO"), "two");
    assert_eq!(literal(&h.resolve(&["two", "one"]), "WHO"), "one");
}

#[test]
fn git_user_is_overlaid_per_field() {
    let h = Home::new();
    h.bottle("parent", "git-gate:\n  user:\n    name: P\n    email: p@example.com\n")
        .bottle("child", "extends: parent\ngit-gate:\n  user:\n    name: C\n");
    let r = h.resolve(&["child"]);
    assert_eq!(r.spec.git_user.name.as_ref().map(|v| v.value.as_str()), Some("C"));
    assert_eq!(r.spec.git_user.email.as_ref().map(|v| v.value.as_str()), Some("p@example.com"));
}

#[test]
fn git_repos_are_a_union_by_name_later_wins_per_field() {
    let hk = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    let h = Home::new();
    h.bottle(
        "parent",
        &format!("git-gate:\n  repos:\n    app:\n      url: git@h.example.com:o/app.git\n      identity: ~/.ssh/old\n      host_key: {hk}\n"),
    )
    .bottle(
        "child",
        &format!("extends: parent\ngit-gate:\n  repos:\n    app:\n      identity: ~/.ssh/new\n    lib:\n      url: git@h.example.com:o/lib.git\n      identity: ~/.ssh/lib\n      host_key: {hk}\n"),
    );
    let r = h.resolve(&["child"]);
    assert_eq!(r.spec.git_repos.keys().collect::<Vec<_>>(), ["app", "lib"]);
    let app = &r.spec.git_repos["app"];
    assert_eq!(app.url.as_ref().map(|u| u.value.as_str()), Some("git@h.example.com:o/app.git"));
    assert_eq!(app.key.as_ref().map(|k| &k.value), Some(&RepoKey::Identity { path: "~/.ssh/new".into() }));
    assert!(app.host_key.is_some());
}

#[test]
fn routes_concatenate_and_a_later_route_for_the_same_host_wins() {
    let h = Home::new();
    h.bottle("a", "egress:\n  routes:\n    - host: shared.example.com\n      matches:\n        - methods: [GET]\n    - host: a.example.com\n")
        .bottle("b", "egress:\n  routes:\n    - host: b.example.com\n    - host: shared.example.com\n      matches:\n        - methods: [POST]\n")
        .bottle("top", "extends: [a, b]\negress:\n  routes:\n    - host: top.example.com\n");
    let r = h.resolve(&["top"]);
    let hosts: Vec<&str> = r.spec.egress.routes.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, ["a.example.com", "b.example.com", "shared.example.com", "top.example.com"]);
    let shared = r.spec.egress.routes.iter().find(|r| r.host == "shared.example.com").expect("shared");
    assert_eq!(shared.matches[0].methods, ["POST"]);
    assert_eq!(file_of(&shared.origin.location.path), "b.md");
}

#[test]
fn a_route_on_another_port_is_another_route() {
    let h = Home::new();
    h.bottle("a", "egress:\n  routes:\n    - host: x.example.com\n    - host: x.example.com:8443\n");
    assert_eq!(h.resolve(&["a"]).spec.egress.routes.len(), 2);
}

#[test]
fn scalars_are_last_wins() {
    let h = Home::new();
    h.bottle(
        "parent",
        "agent_provider:\n  template: claude\n  auth_token: PARENT_TOKEN\negress:\n  log: 2\n  upstream_ca: /etc/parent.pem\n",
    )
    .bottle("child", "extends: parent\nagent_provider:\n  template: codex\negress:\n  log: 0\n");
    let r = h.resolve(&["child"]);
    let p = &r.spec.provider;
    assert_eq!(p.template.as_ref().map(|t| t.value.as_str()), Some("codex"));
    assert_eq!(p.auth_token.as_ref().map(|t| t.value.as_str()), Some("PARENT_TOKEN"));
    assert_eq!(r.spec.egress.log.as_ref().map(|l| l.value), Some(0));
    assert_eq!(r.spec.egress.upstream_ca.as_ref().map(|c| c.value.as_str()), Some("/etc/parent.pem"));
}

#[test]
fn a_broken_bottle_does_not_break_the_catalog() {
    let h = Home::new();
    h.bottle("good", "env:\n  A: b\n").bottle("bad", "env: [\n");
    let catalog = h.catalog();
    assert_eq!(catalog.bottles.len(), 2);
    assert!(catalog.resolve_bottles(&["good".into()]).is_ok());
    let err = catalog.resolve_bottles(&["bad".into()]).expect_err("bad fails");
    assert!(err.to_string().contains("bad.md"), "{err}");
}
