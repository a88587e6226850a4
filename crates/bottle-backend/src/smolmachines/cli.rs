//! The `smolvm` command lines a bottle runs, built for the installed version.
//!
//! Pure: nothing here runs a process, so every argv is unit-tested per version and `start --dry-run`
//! prints exactly what a launch would run.

use std::path::Path;

use super::version::SmolvmVersion;
use crate::Error;

/// Builds `smolvm` argv for one installed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmolvmCli {
    /// The program to run (`smolvm`, or an absolute path).
    pub program: String,
    pub version: SmolvmVersion,
}

/// What `machine create` gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSpec<'a> {
    pub name: &'a str,
    /// A packed `.smolmachine` artifact (`--from`).
    pub from: &'a Path,
    /// The egress allow-list (`--allow-cidr`, repeatable).
    pub allow_cidr: &'a [String],
    /// Persisted guest environment (`-e K=V`).
    pub env: &'a [(String, String)],
    pub cpus: u8,
    pub mem_mib: u32,
}

/// How `machine exec` runs its command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecMode {
    /// `-i`: stream this process's stdin into the command.
    pub interactive: bool,
    /// `-t`: give the command a terminal.
    pub tty: bool,
}

impl SmolvmCli {
    pub fn new(program: impl Into<String>, version: SmolvmVersion) -> Self {
        Self { program: program.into(), version }
    }

    fn machine(&self, verb: &str) -> Vec<String> {
        vec![self.program.clone(), "machine".into(), verb.into()]
    }

    /// `NAME` before v1.0.2, `--name NAME` after, for the verbs that changed (`create`, `delete`).
    fn push_name(&self, argv: &mut Vec<String>, name: &str) {
        if self.version.names_are_flags() {
            argv.push("--name".into());
        }
        argv.push(name.into());
    }

    /// `smolvm --version`.
    pub fn version_argv(program: &str) -> Vec<String> {
        vec![program.to_owned(), "--version".into()]
    }

    /// `machine create` from a packed artifact with the allow-list. Refused on versions whose
    /// `--from` ignores the egress flags: the machine would be created with an open network.
    pub fn create(&self, spec: &CreateSpec<'_>) -> Result<Vec<String>, Error> {
        if !spec.allow_cidr.is_empty() && !self.version.from_honours_egress() {
            return Err(Error::SmolvmUnsafe { version: self.version.to_string(), why: FROM_DROPS_EGRESS.into() });
        }
        if spec.allow_cidr.is_empty() {
            return Err(Error::SmolvmUnsafe {
                version: self.version.to_string(),
                why: "a machine without an allow-list would have no egress boundary".into(),
            });
        }
        let mut argv = self.machine("create");
        self.push_name(&mut argv, spec.name);
        argv.extend(["--from".into(), spec.from.display().to_string()]);
        for cidr in spec.allow_cidr {
            argv.extend(["--allow-cidr".into(), cidr.clone()]);
        }
        argv.extend(["--cpus".into(), spec.cpus.to_string(), "--mem".into(), spec.mem_mib.to_string()]);
        for (k, v) in spec.env {
            argv.extend(["-e".into(), format!("{k}={v}")]);
        }
        Ok(argv)
    }

    /// `machine create` of a network-less machine from a local image tarball, for packing.
    pub fn create_for_pack(&self, name: &str, image_tar: &Path) -> Vec<String> {
        let mut argv = self.machine("create");
        self.push_name(&mut argv, name);
        argv.extend(["--image".into(), image_tar.display().to_string()]);
        argv
    }

    /// `machine start --name NAME`.
    pub fn start(&self, name: &str) -> Vec<String> {
        let mut argv = self.machine("start");
        argv.extend(["--name".into(), name.into()]);
        argv
    }

    /// `machine stop --name NAME`.
    pub fn stop(&self, name: &str) -> Vec<String> {
        let mut argv = self.machine("stop");
        argv.extend(["--name".into(), name.into()]);
        argv
    }

    /// `machine delete NAME -f` (or `--name NAME -f`). Always forced: without `-f` a delete with no
    /// terminal prints "Cancelled", exits 0 and deletes nothing. Run it after [`Self::stop`]: some
    /// versions leave a running VM's process behind.
    pub fn delete(&self, name: &str) -> Vec<String> {
        let mut argv = self.machine("delete");
        self.push_name(&mut argv, name);
        argv.push("-f".into());
        argv
    }

    /// `machine ls --json`.
    pub fn ls(&self) -> Vec<String> {
        let mut argv = self.machine("ls");
        argv.push("--json".into());
        argv
    }

    /// `machine exec --name NAME [-i] [-t] [-e K=V…] -- CMD…`. The environment goes on every exec:
    /// what `create -e` persisted has been seen not to reach exec'd processes.
    pub fn exec(&self, name: &str, mode: ExecMode, env: &[(String, String)], command: &[String]) -> Vec<String> {
        let mut argv = self.machine("exec");
        argv.extend(["--name".into(), name.into()]);
        if mode.interactive {
            argv.push("-i".into());
        }
        if mode.tty {
            argv.push("-t".into());
        }
        for (k, v) in env {
            argv.extend(["-e".into(), format!("{k}={v}")]);
        }
        argv.push("--".into());
        argv.extend(command.iter().cloned());
        argv
    }

    /// `pack create --from-vm NAME -o OUTPUT`: the artifact of a stopped machine that has started
    /// once (its image unpacked).
    pub fn pack_from_vm(&self, name: &str, output: &Path) -> Vec<String> {
        vec![
            self.program.clone(),
            "pack".into(),
            "create".into(),
            "--from-vm".into(),
            name.into(),
            "-o".into(),
            output.display().to_string(),
        ]
    }
}

/// Why versions before [`super::version::MIN_LAUNCH`] are refused.
pub const FROM_DROPS_EGRESS: &str =
    "its `machine create --from` ignores `--allow-cidr`, so the VM would have an open network";

/// The guest side of every command: as `user`, with `HOME`/`USER` and the bottle's environment set
/// explicitly (`runuser` without `-l`: a login shell hangs on minimal images), optionally in
/// `workdir`, then `argv`.
pub fn guest_command(user: GuestUser, env: &[(String, String)], workdir: Option<&str>, argv: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let (name, home) = match user {
        GuestUser::Root => ("root", "/root"),
        GuestUser::Agent => ("node", bottle_core::plan::GUEST_HOME),
        GuestUser::Nobody => ("nobody", "/nonexistent"),
    };
    if user != GuestUser::Root {
        out.extend(["runuser".into(), "-u".into(), name.into(), "--".into()]);
    }
    out.extend(["env".into(), format!("HOME={home}"), format!("USER={name}")]);
    out.extend(env.iter().filter(|(k, _)| k != "HOME" && k != "USER").map(|(k, v)| format!("{k}={v}")));
    if let Some(dir) = workdir {
        out.extend([
            "sh".into(),
            "-c".into(),
            format!("cd {} && exec \"$@\"", crate::docker::sh_quote(dir)),
            "bot-bottle-agent".into(),
        ]);
    }
    out.extend(argv.iter().cloned());
    out
}

/// Who a guest command runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestUser {
    Root,
    /// `node` (uid 1000).
    Agent,
    /// An unprivileged user that is not the agent.
    Nobody,
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn cli(v: (u32, u32, u32)) -> SmolvmCli {
        SmolvmCli::new("smolvm", SmolvmVersion::new(v.0, v.1, v.2))
    }

    fn s(argv: &[String]) -> String {
        argv.join(" ")
    }

    #[test]
    fn names_are_positional_before_1_0_2_and_flags_after() {
        assert_eq!(s(&cli((0, 8, 0)).delete("m")), "smolvm machine delete m -f");
        assert_eq!(s(&cli((1, 0, 2)).delete("m")), "smolvm machine delete --name m -f");
        let tar = PathBuf::from("/c/i.tar");
        assert_eq!(s(&cli((0, 8, 5)).create_for_pack("p", &tar)), "smolvm machine create p --image /c/i.tar");
        assert_eq!(s(&cli((1, 9, 0)).create_for_pack("p", &tar)), "smolvm machine create --name p --image /c/i.tar");
        // start, stop and exec take --name in every version; exec has no -n.
        for v in [(0, 8, 0), (1, 9, 3)] {
            assert_eq!(s(&cli(v).start("m")), "smolvm machine start --name m");
            assert_eq!(s(&cli(v).stop("m")), "smolvm machine stop --name m");
            let exec = cli(v).exec("m", ExecMode::default(), &[], &["true".into()]);
            assert_eq!(s(&exec), "smolvm machine exec --name m -- true");
            assert!(!exec.contains(&"-n".to_owned()));
        }
    }

    #[test]
    fn delete_is_always_forced() {
        for v in [(0, 8, 0), (1, 0, 1), (1, 0, 2), (1, 17, 0)] {
            assert_eq!(cli(v).delete("m").last().map(String::as_str), Some("-f"), "{v:?}");
        }
    }

    #[test]
    fn create_carries_the_allow_list_and_env() {
        let env = vec![("HTTPS_PROXY".to_owned(), "http://10.210.1.2:9099".to_owned())];
        let cidr = vec!["10.210.1.2/32".to_owned()];
        let from = PathBuf::from("/cache/k.smolmachine");
        let spec =
            CreateSpec { name: "bot-bottle-x", from: &from, allow_cidr: &cidr, env: &env, cpus: 2, mem_mib: 4096 };
        assert_eq!(
            s(&cli((1, 8, 0)).create(&spec).unwrap()),
            "smolvm machine create --name bot-bottle-x --from /cache/k.smolmachine --allow-cidr 10.210.1.2/32 \
             --cpus 2 --mem 4096 -e HTTPS_PROXY=http://10.210.1.2:9099"
        );
    }

    #[test]
    fn create_from_is_refused_where_it_drops_the_allow_list() {
        let cidr = vec!["10.210.1.2/32".to_owned()];
        let from = PathBuf::from("/cache/k.smolmachine");
        let spec = CreateSpec { name: "m", from: &from, allow_cidr: &cidr, env: &[], cpus: 2, mem_mib: 4096 };
        for v in [(0, 8, 0), (1, 0, 2), (1, 7, 9)] {
            let err = cli(v).create(&spec).unwrap_err();
            assert!(matches!(err, Error::SmolvmUnsafe { .. }), "{v:?}: {err}");
            assert!(err.to_string().contains("--allow-cidr"), "{err}");
        }
        let open = CreateSpec { allow_cidr: &[], ..spec };
        assert!(cli((1, 9, 0)).create(&open).is_err(), "no allow-list is no boundary");
    }

    #[test]
    fn exec_modes_and_env_forwarding() {
        let env = vec![("A".to_owned(), "1".to_owned()), ("B".to_owned(), "x y".to_owned())];
        let argv = cli((1, 9, 0)).exec("m", ExecMode { interactive: true, tty: true }, &env, &["sh".into()]);
        assert_eq!(
            argv,
            ["smolvm", "machine", "exec", "--name", "m", "-i", "-t", "-e", "A=1", "-e", "B=x y", "--", "sh"]
        );
        let argv = cli((1, 9, 0)).exec("m", ExecMode { interactive: true, tty: false }, &[], &["sh".into()]);
        assert_eq!(s(&argv), "smolvm machine exec --name m -i -- sh");
    }

    #[test]
    fn guest_commands_switch_user_before_the_agent() {
        let env = vec![("HTTPS_PROXY".to_owned(), "http://p:1".to_owned()), ("HOME".to_owned(), "/evil".to_owned())];
        let argv = guest_command(GuestUser::Agent, &env, None, &["claude".into(), "--continue".into()]);
        assert_eq!(
            argv,
            [
                "runuser",
                "-u",
                "node",
                "--",
                "env",
                "HOME=/home/node",
                "USER=node",
                "HTTPS_PROXY=http://p:1",
                "claude",
                "--continue"
            ]
        );
        assert!(!argv.iter().any(|a| a == "-l" || a == "-lc"), "no login shell");
        let argv = guest_command(GuestUser::Agent, &[], Some("/home/node/workspace"), &["claude".into()]);
        let at = |needle: &str| argv.iter().position(|a| a == needle).unwrap();
        assert!(at("runuser") < at("sh") && at("sh") < at("claude"), "{argv:?}");
        assert_eq!(argv[argv.len() - 3..], ["cd '/home/node/workspace' && exec \"$@\"", "bot-bottle-agent", "claude"]);
        let root = guest_command(GuestUser::Root, &[], None, &["/bin/sh".into(), "-c".into(), "id".into()]);
        assert_eq!(s(&root), "env HOME=/root USER=root /bin/sh -c id");
    }
}
