//! `bot-bottle image build`: builds the agent and sidecar images, skipping any whose inputs are
//! unchanged. Tags go to stdout (one `<kind> <tag>` line each); progress goes to stderr.
//!
//! The sidecar image gets this very executable, so the sidecar always runs the same version as the
//! CLI that launches it.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use bottle_backend::Engine;
use bottle_backend::image::{BuildMode, ImageBuilder, ImageRecipe, Progress};

use crate::cli::{ImageBuildArgs, ImageChoice, ImageCommand};
use crate::printer::Printer;

pub fn run(command: &ImageCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        ImageCommand::Build(args) => build(args, printer),
    }
}

fn build(args: &ImageBuildArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let mode = if args.offline { BuildMode::Offline } else { BuildMode::Registry };
    let mut recipes = Vec::new();
    if matches!(args.which, ImageChoice::Agent | ImageChoice::All) {
        recipes.push(ImageRecipe::agent(mode));
    }
    if matches!(args.which, ImageChoice::Sidecar | ImageChoice::All) {
        let exe = std::env::current_exe()?;
        recipes.push(ImageRecipe::sidecar_from_file(mode, &exe).map_err(super::backend_error)?);
    }
    // Only this command needs async (bollard); the rest of the CLI stays synchronous.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let progress = StderrProgress { quiet: printer.quiet, verbose: printer.verbose > 0 };
    let built = runtime.block_on(async {
        let engine = Engine::connect().await.map_err(super::backend_error)?;
        progress.step("engine", &format!("`{}` (API {})", engine.endpoint(), engine.api_version()));
        let builder = ImageBuilder::new(&engine, &progress).map_err(super::backend_error)?;
        let mut built = Vec::new();
        for recipe in &recipes {
            let started = Instant::now();
            let image = builder.build(recipe).await.map_err(super::backend_error)?;
            if !image.reused {
                progress.step(recipe.kind.name(), &format!("done in {:.0?}", started.elapsed()));
            }
            built.push(image);
        }
        anyhow::Ok(built)
    })?;
    for image in built {
        printer.outln(&format!("{} {}", image.kind.name(), image.tag))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress lines on stderr: steps unless `-q`, tool output only with `-v`. Writes stderr itself
/// because steps arrive from inside the async build, line by line as they happen.
struct StderrProgress {
    quiet: bool,
    verbose: bool,
}

impl Progress for StderrProgress {
    fn step(&self, image: &str, message: &str) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr().lock(), "{image}: {message}");
        }
    }

    fn output(&self, image: &str, line: &str) {
        if self.verbose && !self.quiet {
            let _ = writeln!(std::io::stderr().lock(), "{image}  | {line}");
        }
    }
}
