//! Rendering a template for one bottle: `{{variable}}` substitution with per-format escaping, the
//! files and environment the agent gets, and its command line.
//!
//! Substitution is plain text replacement, but values are escaped for the file they land in (a
//! label with a quote cannot break `~/.claude.json` or `config.toml`), and a rendered JSON or TOML
//! file must parse before it is written.

use std::path::Path;

use bottle_core::Diagnostic;
use bottle_core::diag::SourceLocation;

use crate::schema::{FileFormat, PromptMode, Template};

/// The values a template's `{{variables}}` take in one bottle.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// The agent's home, `/home/node`.
    pub home: String,
    /// Where the agent starts (its trusted project directory).
    pub workdir: String,
    pub slug: String,
    /// The bottle's label, or its slug when it has none.
    pub label: String,
    /// The colour's name, or empty.
    pub color: String,
    /// The system prompt's path in the bottle.
    pub prompt_file: String,
    /// The supervise MCP endpoint in the bottle.
    pub mcp_url: String,
    /// The credential placeholder the agent holds, or empty.
    pub placeholder: String,
    /// The egress proxy in the bottle.
    pub proxy_url: String,
    /// The bottle CA's path in the bottle.
    pub ca_file: String,
    /// `agent_provider.settings`.
    pub settings: Option<serde_json::Value>,
}

impl Vars {
    fn get(&self, name: &str) -> Option<String> {
        Some(
            match name {
                "home" => &self.home,
                "workdir" => &self.workdir,
                "slug" => &self.slug,
                "label" => &self.label,
                "color" => &self.color,
                "prompt_file" => &self.prompt_file,
                "mcp_url" => &self.mcp_url,
                "placeholder" => &self.placeholder,
                "proxy_url" => &self.proxy_url,
                "ca_file" => &self.ca_file,
                _ => return self.setting(name.strip_prefix("settings.")?),
            }
            .clone(),
        )
    }

    fn setting(&self, path: &str) -> Option<String> {
        let mut v = self.settings.as_ref()?;
        for part in path.split('.') {
            v = v.get(part)?;
        }
        match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// How the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// On a terminal.
    Interactive,
    /// `--headless --prompt TEXT`.
    Headless(String),
}

/// A file for the agent's home, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Absolute path in the bottle.
    pub path: String,
    pub mode: u32,
    pub contents: Vec<u8>,
}

/// Everything a template contributes to one bottle besides its command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub env: Vec<(String, String)>,
    pub files: Vec<RenderedFile>,
    /// Registers the supervise MCP server; run as the agent after the files are written.
    pub mcp_command: Vec<String>,
}

/// The `{{…}}` names in `s`, in order.
pub fn variables(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| "a `{{` is never closed".to_owned())?;
        out.push(after[..end].trim());
        rest = &after[end + 2..];
    }
    Ok(out)
}

/// `s` with every variable replaced, escaped for `format`. `extra` adds variables (`prompt`).
fn substitute(s: &str, vars: &Vars, format: FileFormat, extra: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| "a `{{` is never closed".to_owned())?;
        let spec = after[..end].trim();
        let (name, default) = match spec.split_once('|') {
            Some((n, d)) => (n.trim(), Some(d)),
            None => (spec, None),
        };
        let value = extra
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
            .or_else(|| vars.get(name))
            .or_else(|| default.map(str::to_owned))
            .ok_or_else(|| match name.strip_prefix("settings.") {
                Some(key) => format!("needs `agent_provider.settings.{key}`, which the bottle does not set"),
                None => format!("has no value for `{{{{{name}}}}}`"),
            })?;
        out.push_str(&escape(&value, format));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn escape(value: &str, format: FileFormat) -> String {
    match format {
        FileFormat::Text => value.to_owned(),
        FileFormat::Json | FileFormat::Toml => {
            let quoted = serde_json::Value::String(value.to_owned()).to_string();
            // JSON escaping is valid inside a TOML basic string, except that TOML also wants DEL escaped.
            quoted[1..quoted.len() - 1].replace('\u{7f}', "\\u007f")
        }
    }
}

/// A rendering problem, naming the template and the key.
fn failed(template_path: &Path, key: &str, provider: &str, why: &str) -> Diagnostic {
    Diagnostic::new(format!("provider `{provider}`: `{key}` {why}"))
        .at(SourceLocation { path: template_path.to_owned(), line: 1, col: 1 })
        .key(key.to_owned())
        .hint("set the value in the bottle's `agent_provider.settings`, or fix the template")
}

/// The environment of `template` for one bottle.
pub fn env(
    template: &Template,
    provider: &str,
    template_path: &Path,
    vars: &Vars,
) -> Result<Vec<(String, String)>, Diagnostic> {
    template
        .env
        .iter()
        .map(|(name, value)| {
            substitute(value, vars, FileFormat::Text, &[])
                .map(|v| (name.clone(), v))
                .map_err(|e| failed(template_path, &format!("env.{name}"), provider, &e))
        })
        .collect()
}

/// The files, environment and MCP command of `template` for one bottle.
pub fn render(template: &Template, provider: &str, template_path: &Path, vars: &Vars) -> Result<Rendered, Diagnostic> {
    let mut out = Rendered { env: env(template, provider, template_path, vars)?, ..Rendered::default() };
    for (i, f) in template.files.iter().enumerate() {
        let key = format!("files[{i}]");
        let contents = substitute(&f.content, vars, f.format, &[])
            .map_err(|e| failed(template_path, &format!("{key}.content"), provider, &e))?;
        let parse_error = match f.format {
            FileFormat::Json => serde_json::from_str::<serde_json::Value>(&contents).err().map(|e| e.to_string()),
            FileFormat::Toml => toml::from_str::<toml::Table>(&contents).err().map(|e| e.message().to_owned()),
            FileFormat::Text => None,
        };
        if let Some(e) = parse_error {
            return Err(failed(
                template_path,
                &key,
                provider,
                &format!("(`{}`) does not parse once rendered: {e}", f.path),
            )
            .hint("fix the file's `content` in the template"));
        }
        out.files.push(RenderedFile {
            path: format!("{}/{}", vars.home.trim_end_matches('/'), f.path),
            mode: f.mode.unwrap_or(0o644),
            contents: contents.into_bytes(),
        });
    }
    for (i, a) in template.mcp.command.iter().enumerate() {
        let key = format!("mcp.command[{i}]");
        out.mcp_command
            .push(substitute(a, vars, FileFormat::Text, &[]).map_err(|e| failed(template_path, &key, provider, &e))?);
    }
    Ok(out)
}

/// The agent's command line in `mode`: `command + bypass_args + prompt args` on a terminal;
/// `command + headless.prefix + bypass_args + prompt args + headless.args` headless. `resume`
/// adds `resume_args` (interactive only).
pub fn command(
    template: &Template,
    provider: &str,
    template_path: &Path,
    vars: &Vars,
    mode: &Mode,
    resume: bool,
) -> Result<Vec<String>, Diagnostic> {
    let plain = |key: &str, values: &[String]| -> Result<Vec<String>, Diagnostic> {
        values
            .iter()
            .enumerate()
            .map(|(i, a)| {
                substitute(a, vars, FileFormat::Text, &[])
                    .map_err(|e| failed(template_path, &format!("{key}[{i}]"), provider, &e))
            })
            .collect()
    };
    let mut argv = plain("command", &template.command)?;
    if let Mode::Headless(_) = mode {
        argv.extend(plain("headless.prefix", &template.headless.prefix)?);
    }
    argv.extend(plain("bypass_args", &template.bypass_args)?);
    let mut first_message = None;
    match template.prompt.mode {
        PromptMode::AppendFile => {
            if let Some(flag) = &template.prompt.flag {
                argv.push(flag.clone());
                argv.push(vars.prompt_file.clone());
            }
        }
        PromptMode::ReadPromptFile => {
            let message = template.prompt.message.as_deref().unwrap_or_default();
            first_message = Some(
                substitute(message, vars, FileFormat::Text, &[])
                    .map_err(|e| failed(template_path, "prompt.message", provider, &e))?,
            );
        }
        PromptMode::None => {}
    }
    match mode {
        Mode::Interactive => {
            if resume {
                argv.extend(plain("resume_args", &template.resume_args)?);
            } else if let Some(m) = first_message {
                argv.push(m);
            }
        }
        Mode::Headless(prompt) => {
            let text = match first_message {
                Some(m) => format!("{m}\n\n{prompt}"),
                None => prompt.clone(),
            };
            for (i, a) in template.headless.args.iter().enumerate() {
                argv.push(
                    substitute(a, vars, FileFormat::Text, &[("prompt", &text)])
                        .map_err(|e| failed(template_path, &format!("headless.args[{i}]"), provider, &e))?,
                );
            }
        }
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin;

    fn vars() -> Vars {
        Vars {
            home: "/home/node".into(),
            workdir: "/home/node".into(),
            slug: "dev-1".into(),
            label: "say \"hi\"\\ \u{7f}".into(),
            color: "red".into(),
            prompt_file: "/home/node/.bot-bottle-prompt.md".into(),
            mcp_url: "http://127.0.0.1:9100/mcp".into(),
            placeholder: "placeholder-1234".into(),
            proxy_url: "http://127.0.0.1:9099".into(),
            ca_file: "/ca.crt".into(),
            settings: Some(serde_json::json!({"base_url": "http://llm.test/v1", "n": 3})),
        }
    }

    #[test]
    fn values_are_escaped_for_their_file() {
        let v = vars();
        let json = substitute("{\"l\": \"{{label}}\"}", &v, FileFormat::Json, &[]).expect("renders");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&json).expect("json")["l"], v.label.as_str());
        let toml_text = substitute("l = \"{{label}}\"", &v, FileFormat::Toml, &[]).expect("renders");
        assert_eq!(toml::from_str::<toml::Table>(&toml_text).expect("toml")["l"].as_str(), Some(v.label.as_str()));
        assert_eq!(substitute("{{settings.n}} {{settings.model|m1}}", &v, FileFormat::Text, &[]).expect("ok"), "3 m1");
        let missing = substitute("{{settings.model}}", &v, FileFormat::Text, &[]).expect_err("missing");
        assert!(missing.contains("agent_provider.settings.model"), "{missing}");
    }

    #[test]
    fn builtin_files_render_and_parse() {
        for name in crate::builtin_names() {
            let p = builtin(name).expect("built-in");
            let mut v = vars();
            v.settings = None;
            render(&p.template, name, &p.path, &v).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn claude_command_lines() {
        let p = builtin("claude").expect("claude");
        let v = vars();
        let i = command(&p.template, "claude", &p.path, &v, &Mode::Interactive, false).expect("argv");
        assert_eq!(
            i,
            [
                "claude",
                "--dangerously-skip-permissions",
                "--append-system-prompt-file",
                "/home/node/.bot-bottle-prompt.md"
            ]
        );
        let h = command(&p.template, "claude", &p.path, &v, &Mode::Headless("do it".into()), false).expect("argv");
        assert_eq!(&h[h.len() - 2..], ["-p", "do it"]);
        let r = command(&p.template, "claude", &p.path, &v, &Mode::Interactive, true).expect("argv");
        assert_eq!(r.last().map(String::as_str), Some("--continue"));
    }

    #[test]
    fn read_prompt_file_goes_first_in_the_headless_prompt() {
        let t = crate::parse(
            "command = [\"a\"]\n[prompt]\nmode = \"read_prompt_file\"\nmessage = \"Read {{prompt_file}}.\"\n\
             [headless]\nprefix = [\"exec\"]\nargs = [\"{{prompt}}\"]\n",
            Path::new("t.toml"),
        )
        .expect("parses");
        let v = vars();
        let h = command(&t, "a", Path::new("t.toml"), &v, &Mode::Headless("go".into()), false).expect("argv");
        assert_eq!(h, ["a", "exec", "Read /home/node/.bot-bottle-prompt.md.\n\ngo"]);
        let i = command(&t, "a", Path::new("t.toml"), &v, &Mode::Interactive, false).expect("argv");
        assert_eq!(i, ["a", "Read /home/node/.bot-bottle-prompt.md."]);
    }
}
