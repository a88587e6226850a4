//! `bot-bottle cp` against a real bottle: a file comes out owned by the caller, an existing
//! destination is kept unless `--force`, and a symbolic link pointing out of the copied tree is
//! refused without leaving anything behind.

use std::os::unix::fs::MetadataExt as _;

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
    let cp = |src: &str, dest: &std::path::Path, force: bool| {
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
