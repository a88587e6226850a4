//! tmux mode: the dashboard stays in its pane and agents run in one pane to its right.
//!
//! The first attach splits the dashboard's pane (`split-window -h -P -F '#{pane_id}'`) and
//! remembers the new pane's id; later attaches check it still exists (`list-panes -a`) and replace
//! its process (`respawn-pane -k`), or split again when the operator closed it. Every tmux call goes
//! through [`TmuxRunner`], so the pane logic is tested against a recorder; any failure is returned
//! for the caller to fall back to the foreground.
//!
//! The commands a pane runs are built here too: the absolute path of this executable (a pane's
//! working directory and `PATH` are tmux's, not ours), the home passed explicitly (a pane's
//! environment is the tmux server's), every value shell-quoted.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

/// Runs one tmux command and returns its stdout.
pub trait TmuxRunner {
    fn run(&self, args: &[String]) -> anyhow::Result<String>;
}

/// The `tmux` on `PATH`, talking to the server `$TMUX` names.
pub struct SystemTmux;

impl TmuxRunner for SystemTmux {
    fn run(&self, args: &[String]) -> anyhow::Result<String> {
        let out = Command::new("tmux").args(args).output().context("cannot run `tmux`")?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            bail!("`tmux {}` failed ({}): {why}", args.first().map_or("", String::as_str), out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Whether this process runs inside tmux.
pub fn inside() -> bool {
    std::env::var_os("TMUX").is_some_and(|v| !v.is_empty())
}

/// What showing a command did to the right pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// A new pane was split off the dashboard's.
    Split,
    /// The remembered pane's process was replaced.
    Respawned,
}

/// The pane agents run in, once there is one.
#[derive(Debug, Default)]
pub struct RightPane {
    /// The tmux pane id (`%N`).
    pub pane: Option<String>,
}

/// Where and how a pane's command runs.
pub struct PaneSetup<'a> {
    /// The dashboard's own pane (`$TMUX_PANE`), split to make the right pane.
    pub own_pane: Option<&'a str>,
    /// The pane's working directory (repository agents are found from it).
    pub cwd: &'a Path,
    /// Variables the pane's command needs that the tmux server may not have.
    pub env: &'a [(String, String)],
}

impl RightPane {
    /// Runs `command` (a shell command line) in the right pane: respawned when the remembered pane
    /// still exists, else in a new split. On an error the remembered pane is kept as it was.
    pub fn show(&mut self, tmux: &dyn TmuxRunner, setup: &PaneSetup<'_>, command: &str) -> anyhow::Result<Shown> {
        if let Some(id) = self.pane.clone() {
            let listed = tmux.run(&strings(&["list-panes", "-a", "-F", "#{pane_id}"]))?;
            if listed.lines().any(|l| l.trim() == id) {
                let mut args = strings(&["respawn-pane", "-k", "-t", &id, "-c"]);
                args.push(setup.cwd.display().to_string());
                push_env(&mut args, setup.env);
                args.push(command.to_owned());
                tmux.run(&args)?;
                // Respawning keeps the focus where it was; the operator came to talk to the agent.
                tmux.run(&strings(&["select-pane", "-t", &id]))?;
                return Ok(Shown::Respawned);
            }
        }
        let mut args = strings(&["split-window", "-h", "-P", "-F", "#{pane_id}"]);
        if let Some(own) = setup.own_pane {
            args.extend(strings(&["-t", own]));
        }
        args.push("-c".into());
        args.push(setup.cwd.display().to_string());
        push_env(&mut args, setup.env);
        args.push(command.to_owned());
        let id = tmux.run(&args)?.trim().to_owned();
        if !id.starts_with('%') {
            bail!("`tmux split-window` printed no pane id");
        }
        self.pane = Some(id);
        Ok(Shown::Split)
    }
}

fn push_env(args: &mut Vec<String>, env: &[(String, String)]) {
    for (k, v) in env {
        args.push("-e".into());
        args.push(format!("{k}={v}"));
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// `s` as one shell word.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `<exe> --home <home>` quoted, the start of every pane command.
fn base(exe: &Path, home: &Path) -> String {
    format!("{} --home {}", quote(&exe.display().to_string()), quote(&home.display().to_string()))
}

/// The shell command that runs the agent of `slug`: the provider's resume form first when it has
/// one, falling back to a fresh agent when that fails (nothing to resume yet).
pub fn attach_command(exe: &Path, home: &Path, slug: &str, resume: bool) -> String {
    let base = base(exe, home);
    let slug = quote(slug);
    if resume {
        format!("{base} attach --resume {slug} || exec {base} attach {slug}")
    } else {
        format!("exec {base} attach {slug}")
    }
}

/// The shell command that launches `agent` detached, its bring-up output on this pane, then
/// attaches to the new bottle (whose slug `start --detach` prints on stdout). A failed launch
/// waits for Enter so its error can be read.
pub fn launch_command(exe: &Path, home: &Path, agent: &str) -> String {
    let base = base(exe, home);
    format!(
        "slug=$({base} start {} --detach --yes) && exec {base} attach \"$slug\"; \
         echo; echo 'the launch failed; press Enter to close this pane'; read _",
        quote(agent)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Answers tmux calls from a script and records them.
    struct Recorder {
        calls: RefCell<Vec<Vec<String>>>,
        panes: RefCell<Vec<String>>,
        fail: Option<&'static str>,
    }

    impl Recorder {
        fn new() -> Self {
            Self { calls: RefCell::default(), panes: RefCell::new(vec!["%0".into()]), fail: None }
        }

        fn verbs(&self) -> Vec<String> {
            self.calls.borrow().iter().map(|c| c[0].clone()).collect()
        }
    }

    impl TmuxRunner for Recorder {
        fn run(&self, args: &[String]) -> anyhow::Result<String> {
            self.calls.borrow_mut().push(args.to_vec());
            if self.fail == Some(args[0].as_str()) {
                bail!("no server running on /tmp/tmux-1000/default");
            }
            Ok(match args[0].as_str() {
                "split-window" => {
                    let mut panes = self.panes.borrow_mut();
                    let id = format!("%{}", panes.len());
                    panes.push(id.clone());
                    format!("{id}\n")
                }
                "list-panes" => self.panes.borrow().join("\n") + "\n",
                _ => String::new(),
            })
        }
    }

    fn setup() -> PaneSetup<'static> {
        PaneSetup { own_pane: Some("%0"), cwd: Path::new("/work/repo"), env: &[] }
    }

    #[test]
    fn splits_once_then_respawns_and_splits_again_when_the_pane_is_gone() {
        let tmux = Recorder::new();
        let mut pane = RightPane::default();
        assert_eq!(pane.show(&tmux, &setup(), "cmd one").unwrap(), Shown::Split);
        assert_eq!(pane.pane.as_deref(), Some("%1"));
        let split = tmux.calls.borrow()[0].clone();
        assert_eq!(
            &split,
            &strings(&["split-window", "-h", "-P", "-F", "#{pane_id}", "-t", "%0", "-c", "/work/repo", "cmd one"])
        );
        assert_eq!(pane.show(&tmux, &setup(), "cmd two").unwrap(), Shown::Respawned);
        assert_eq!(tmux.verbs(), ["split-window", "list-panes", "respawn-pane", "select-pane"]);
        assert_eq!(tmux.calls.borrow()[2].last().map(String::as_str), Some("cmd two"));
        // The operator closed the pane.
        tmux.panes.borrow_mut().retain(|p| p != "%1");
        assert_eq!(pane.show(&tmux, &setup(), "cmd three").unwrap(), Shown::Split);
        assert_eq!(pane.pane.as_deref(), Some("%1"));
    }

    #[test]
    fn a_dead_server_is_an_error_and_keeps_the_pane() {
        let mut tmux = Recorder::new();
        tmux.fail = Some("list-panes");
        let mut pane = RightPane { pane: Some("%3".into()) };
        let err = pane.show(&tmux, &setup(), "cmd").unwrap_err();
        assert!(format!("{err:#}").contains("no server running"), "{err:#}");
        assert_eq!(pane.pane.as_deref(), Some("%3"));
        tmux.fail = Some("split-window");
        let mut fresh = RightPane::default();
        assert!(fresh.show(&tmux, &setup(), "cmd").is_err());
        assert_eq!(fresh.pane, None);
    }

    #[test]
    fn environment_reaches_the_pane() {
        let tmux = Recorder::new();
        let env = [("DOCKER_HOST".to_owned(), "unix:///run/d.sock".to_owned())];
        let setup = PaneSetup { own_pane: None, cwd: Path::new("/"), env: &env };
        RightPane::default().show(&tmux, &setup, "c").unwrap();
        let call = &tmux.calls.borrow()[0];
        assert!(call.windows(2).any(|w| w == ["-e", "DOCKER_HOST=unix:///run/d.sock"]), "{call:?}");
        assert!(!call.contains(&"-t".to_owned()));
    }

    #[test]
    fn pane_commands_quote_everything() {
        let exe = Path::new("/opt/bot bottle/bot-bottle");
        let home = Path::new("/home/o'neil/.bot-bottle");
        assert_eq!(
            attach_command(exe, home, "demo-1", false),
            r"exec '/opt/bot bottle/bot-bottle' --home '/home/o'\''neil/.bot-bottle' attach demo-1"
        );
        let resume = attach_command(Path::new("/bb"), Path::new("/h"), "s", true);
        assert_eq!(resume, "/bb --home /h attach --resume s || exec /bb --home /h attach s");
        let launch = launch_command(Path::new("/bb"), Path::new("/h"), "demo");
        assert!(
            launch.starts_with(
                r#"slug=$(/bb --home /h start demo --detach --yes) && exec /bb --home /h attach "$slug";"#
            )
        );
        assert_eq!(quote("a;rm -rf /"), "'a;rm -rf /'");
        assert_eq!(quote(""), "''");
    }
}
