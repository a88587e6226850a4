//! Real bottles, copied into and out of: `cp` brings a file out owned by the caller, keeps an
//! existing destination unless `--force` and refuses a symbolic link out of the copied tree
//! without leaving anything behind; `start --cwd` copies the working directory in with its
//! history; `list` shows the label in its colour only on a terminal.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::lifecycle::{Home, Stopper, images_ready, unique};

#[test]
fn files_come_out_and_links_out_of_the_tree_do_not() {
    images_ready();
    let _engine = crate::engine_shared();
    let home = Home::new();
    let slug = unique("cp");
    let _stop = Stopper(&home, &slug);
    let out = home.cmd().args(["start", "demo", "--yes", "--detach", "--label", &slug]).output().expect("runs");
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));
    let script = "set -e; echo first > out.txt; mkdir -p tree/sub; echo deep > tree/sub/f; ln -s sub/f tree/ok; \
                  chmod 4755 tree/sub/f; mkdir bad; echo x > bad/x; ln -s ../../../etc/passwd bad/evil";
    let out = home.cmd().args(["exec", &slug, "--", "sh", "-c", script]).output().expect("runs");
    assert!(out.status.success(), "exec: {}", String::from_utf8_lossy(&out.stderr));

    let host = tempfile::tempdir().expect("tempdir");
    let dest = host.path().join("out.txt");
    let cp = |src: &str, dest: &Path, force: bool| {
        let mut cmd = home.cmd();
        cmd.args(["cp", &format!("{slug}:{src}")]).arg(dest);
        if force {
            cmd.arg("--force");
        }
        cmd.output().expect("runs")
    };

    // A relative path starts at the agent's working directory (its home here).
    let out = cp("out.txt", &dest, false);
    assert!(out.status.success(), "cp: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&dest).expect("copied"), "first\n");
    let meta = std::fs::metadata(&dest).expect("meta");
    assert_eq!(meta.uid(), host.path().metadata().expect("meta").uid(), "owned by the caller");

    // An existing destination is refused, named, and kept.
    home.cmd().args(["exec", &slug, "--", "sh", "-c", "echo second > out.txt"]).output().expect("runs");
    let out = cp("/home/node/out.txt", &dest, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("`{}` exists", dest.display())), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&dest).expect("kept"), "first\n");
    let out = cp("/home/node/out.txt", &dest, true);
    assert!(out.status.success(), "cp --force: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&dest).expect("replaced"), "second\n");

    // A directory lands inside an existing directory, links inside the tree kept, setuid dropped.
    let out = cp("/home/node/tree", host.path(), false);
    assert!(out.status.success(), "cp tree: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(host.path().join("tree/ok")).expect("link"), "deep\n");
    let mode = std::fs::metadata(host.path().join("tree/sub/f")).expect("meta").mode();
    assert_eq!(mode & 0o7000, 0, "special bits dropped: {mode:o}");

    // A link out of the tree: refused, named, and nothing is left in the destination's directory.
    let before: Vec<_> = std::fs::read_dir(host.path()).expect("ls").map(|e| e.expect("e").file_name()).collect();
    let out = cp("/home/node/bad", &host.path().join("bad"), false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`bad/evil` is a symbolic link to `../../../etc/passwd`"), "{stderr}");
    assert!(stderr.contains("/home/node/bad"), "{stderr}");
    let after: Vec<_> = std::fs::read_dir(host.path()).expect("ls").map(|e| e.expect("e").file_name()).collect();
    assert_eq!(before, after, "a refused copy leaves nothing behind");

    let out = cp("/home/node/missing", &host.path().join("m"), false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`/home/node/missing`") && stderr.contains("no such file"), "{stderr}");
}

fn git(repo: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=Host", "-c", "user.email=host@example.com"])
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `start --cwd`: the working directory arrives as a copy with its history, owned by the agent,
/// the agent starts in it, and what the agent does to it (a hook) never reaches the host's repo.
#[test]
fn the_working_directory_is_copied_in_with_its_history() {
    images_ready();
    let _engine = crate::engine_shared();
    let home = Home::new();
    let slug = unique("ws");
    let _stop = Stopper(&home, &slug);
    let repo = tempfile::tempdir().expect("tempdir");
    git(repo.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(repo.path().join("README"), "one\n").expect("write");
    git(repo.path(), &["add", "README"]);
    git(repo.path(), &["commit", "-qm", "first commit"]);
    std::fs::write(repo.path().join("README"), "two\n").expect("write");
    git(repo.path(), &["commit", "-qam", "second commit"]);
    let hooks_before: Vec<_> =
        std::fs::read_dir(repo.path().join(".git/hooks")).expect("hooks").map(|e| e.expect("e").file_name()).collect();

    // The plan names the copy before anything exists.
    let out = home
        .cmd()
        .current_dir(repo.path())
        .args(["start", "demo", "--cwd", "--dry-run", "--format", "json"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "dry run: {}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
    assert_eq!(plan["workspace"]["source"], repo.path().display().to_string());
    assert_eq!(plan["workspace"]["dest"], "/home/node/workspace");

    let out = home
        .cmd()
        .current_dir(repo.path())
        .args(["start", "demo", "--yes", "--detach", "--cwd", "--label", &slug])
        .output()
        .expect("runs");
    assert!(out.status.success(), "start --cwd: {}", String::from_utf8_lossy(&out.stderr));

    let exec = |script: &str| {
        let out = home.cmd().args(["exec", &slug, "--", "sh", "-c", script]).output().expect("runs");
        assert!(out.status.success(), "exec {script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(exec("git -C /home/node/workspace log --format=%s"), "second commit\nfirst commit\n");
    assert_eq!(exec("git -C /home/node/workspace status --porcelain"), "", "the copy is the commit, clean");
    assert_eq!(
        exec("stat -c %U:%G /home/node/workspace /home/node/workspace/.git /home/node/workspace/.git/HEAD"),
        "node:node\nnode:node\nnode:node\n"
    );
    // The agent's own command starts in the workspace.
    let out = home.cmd().args(["attach", &slug]).write_stdin("pwd; exit 0\n").output().expect("runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("/home/node/workspace"), "{out:?}");

    // A hook written in the bottle stays there.
    exec(
        "printf '#!/bin/sh\\necho pwned\\n' > /home/node/workspace/.git/hooks/post-checkout; \
          chmod +x /home/node/workspace/.git/hooks/post-checkout",
    );
    let hooks_after: Vec<_> =
        std::fs::read_dir(repo.path().join(".git/hooks")).expect("hooks").map(|e| e.expect("e").file_name()).collect();
    assert_eq!(hooks_before, hooks_after, "the host repo's hooks are untouched");
    assert!(!repo.path().join(".git/hooks/post-checkout").exists());

    // `cp` takes relative paths from the workspace.
    exec("echo changed > /home/node/workspace/README");
    let dest = repo.path().join("README.from-bottle");
    let out = home.cmd().args(["cp", &format!("{slug}:README")]).arg(&dest).output().expect("runs");
    assert!(out.status.success(), "cp: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&dest).expect("copied"), "changed\n");
    assert_eq!(std::fs::read_to_string(repo.path().join("README")).expect("host"), "two\n");

    // The whole workspace comes out without its git metadata, whose hook the agent planted.
    let out_dir = tempfile::tempdir().expect("dest");
    let tree = out_dir.path().join("ws");
    let out = home.cmd().args(["cp", &format!("{slug}:/home/node/workspace")]).arg(&tree).output().expect("runs");
    assert!(out.status.success(), "cp: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(tree.join("README")).expect("copied"), "changed\n");
    assert!(!tree.join(".git").exists(), "git metadata must not come out");
    assert!(String::from_utf8_lossy(&out.stderr).contains("git metadata"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `list` carries the label and colour in JSON, and paints the label only on a terminal without
/// `NO_COLOR`.
#[test]
fn list_shows_the_label_in_its_colour_only_on_a_terminal() {
    images_ready();
    let _engine = crate::engine_shared();
    let home = Home::new();
    let slug = unique("col");
    let _stop = Stopper(&home, &slug);
    let out = home
        .cmd()
        .args(["start", "demo", "--yes", "--detach", "--label", &slug, "--color", "red"])
        .output()
        .expect("runs");
    assert!(out.status.success(), "start: {}", String::from_utf8_lossy(&out.stderr));

    let out = home.cmd().args(["list", "--format", "json"]).output().expect("runs");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list json");
    let row = rows.as_array().expect("array").iter().find(|r| r["slug"] == slug.as_str()).expect("listed");
    assert_eq!(row["label"], slug.as_str());
    assert_eq!(row["color"], "red");

    let red = "\x1b[31m";
    let out = home.cmd().env_remove("NO_COLOR").arg("list").output().expect("runs");
    let piped = String::from_utf8_lossy(&out.stdout);
    assert!(piped.contains(&slug) && !piped.contains('\x1b'), "no colour into a pipe: {piped:?}");

    let home_arg = home.path().display().to_string();
    let docker_host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let mut env = vec![("HOME", std::env::var("HOME").unwrap_or_default())];
    if !docker_host.is_empty() {
        env.push(("DOCKER_HOST", docker_host));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut tty = crate::interactive::Session::run(Path::new(&home_arg), &["list"], &env);
    assert_eq!(tty.exit_code(), 0);
    let painted = tty.raw();
    assert!(painted.contains(&format!("{red}{slug}")), "the label in red on a terminal: {painted:?}");
    let mut env_no = env.clone();
    env_no.push(("NO_COLOR", "1"));
    let mut tty = crate::interactive::Session::run(Path::new(&home_arg), &["list"], &env_no);
    assert_eq!(tty.exit_code(), 0);
    let plain = tty.raw();
    assert!(plain.contains(&slug) && !plain.contains(red), "NO_COLOR is honoured: {plain:?}");
}
