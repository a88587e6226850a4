//! Built-in `token_patterns` rules: public credential formats, written from the vendors' published
//! token shapes.
//!
//! Every rule names literal *anchors* (vendor prefixes, keywords). The engine finds anchors with one
//! Aho-Corasick pass and evaluates a rule only in a bounded window around each hit, so clean text
//! costs one prefilter pass and no regex work. A rule's window (`before`/`after` bytes around the
//! anchor) also bounds how much a stream must carry between chunks.

mod matchers;
#[cfg(test)]
mod tests;

use std::ops::Range;

use regex::bytes::Regex;

use crate::error::DlpError;
use crate::finding::Confidence;

pub(crate) use matchers::AssignmentKind;

/// A set of bytes that may not touch a token's edge (so `xghp_…` or `ghp_…x` with too many
/// characters do not match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edge {
    /// No boundary check.
    Any,
    /// Not preceded/followed by an ASCII digit.
    Digit,
    /// Not next to `[A-Za-z0-9]`.
    Alnum,
    /// Not next to `[A-Za-z0-9_]`.
    Word,
    /// Not next to `[A-Za-z0-9_-]`.
    Base64Url,
    /// Not next to `[A-Za-z0-9+/=]`.
    Base64,
}

impl Edge {
    pub(crate) fn blocks(self, b: u8) -> bool {
        match self {
            Self::Any => false,
            Self::Digit => b.is_ascii_digit(),
            Self::Alnum => b.is_ascii_alphanumeric(),
            Self::Word => b.is_ascii_alphanumeric() || b == b'_',
            Self::Base64Url => b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
            Self::Base64 => b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=',
        }
    }
}

/// How a rule decides, given a window around an anchor.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Matcher {
    /// A regex over the window. The reported span is the first capture group that took part in
    /// the match, or the whole match. The whole match must overlap the anchor's first byte.
    Regex {
        pattern: &'static str,
        leading: Edge,
        trailing: Edge,
        validate: Option<fn(&[u8]) -> bool>,
        /// Lowercase literal that must occur (ASCII case-insensitively) in the window before the
        /// anchor: a cheap check that spares the regex on common anchors.
        context: Option<&'static str>,
        /// Bytes allowed right after the anchor (empty: any), checked before running the regex.
        follow: &'static [u8],
    },
    /// `keyword…[:=] value` with a high-entropy value (hand-written: keywords are common).
    Assignment(AssignmentKind),
    /// A PEM private-key block, extended to its `-----END …-----` line when that is in reach.
    /// `json_key` means the block must be the value of a JSON `"private_key"` member.
    PemBlock { json_key: bool },
    /// `scheme://user:password@host`, reporting the password.
    UrlCredentials,
}

/// One built-in rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) id: &'static str,
    pub(crate) description: &'static str,
    pub(crate) confidence: Confidence,
    /// Exact-case literals; a rule is evaluated only around these.
    pub(crate) anchors: &'static [&'static str],
    /// Bytes of context the rule may look at before the anchor.
    pub(crate) before: usize,
    /// Bytes the rule may look at after the anchor's end (its longest match, roughly).
    pub(crate) after: usize,
    pub(crate) matcher: Matcher,
}

/// Public description of a built-in rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleInfo {
    /// Kebab-case id, as in [`crate::Finding::rule_id`].
    pub id: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// The rule's confidence.
    pub confidence: Confidence,
}

const SECRET_WORDS: &[&str] = &["secret", "Secret", "SECRET"];
// Assignment keywords. Deliberately few and spelled in the three usual cases: every extra short
// anchor raises the SIMD prefilter's false-positive rate on ordinary code.
const SECRET_ASSIGNMENT_WORDS: &[&str] =
    &["key", "Key", "KEY", "token", "Token", "TOKEN", "secret", "Secret", "SECRET"];
const PASSWORD_WORDS: &[&str] = &["passw", "Passw", "PASSW"];
const BEARER_WORDS: &[&str] = &["Bearer", "bearer", "token", "Token", "TOKEN"];

const fn token(
    id: &'static str,
    description: &'static str,
    anchors: &'static [&'static str],
    after: usize,
    pattern: &'static str,
    leading: Edge,
    trailing: Edge,
) -> Rule {
    Rule {
        id,
        description,
        confidence: Confidence::High,
        anchors,
        before: 0,
        after,
        matcher: Matcher::Regex { pattern, leading, trailing, validate: None, context: None, follow: b"" },
    }
}

/// The rule table. Ids are stable: manifests, audit logs and allow-lists refer to them.
pub(crate) static RULES: &[Rule] = &[
    token(
        "aws-access-key-id",
        "AWS access key id",
        &["AKIA", "ASIA"],
        16,
        r"\A(?:AKIA|ASIA)[A-Z2-7]{16}",
        Edge::Alnum,
        Edge::Alnum,
    ),
    Rule {
        id: "aws-secret-access-key",
        description: "AWS secret access key assigned to a secret-access-key field",
        confidence: Confidence::High,
        anchors: SECRET_WORDS,
        before: 0,
        after: 80,
        matcher: Matcher::Regex {
            pattern: r#"(?i)\Asecret[_-]?access[_-]?key["']?[ \t]{0,4}(?:=>|:=|=|:)[ \t]{0,4}["']?([a-z0-9/+]{40})"#,
            leading: Edge::Any,
            trailing: Edge::Base64,
            validate: None,
            context: None,
            follow: b"_-Aa",
        },
    },
    token(
        "gcp-api-key",
        "Google Cloud API key",
        &["AIza"],
        35,
        r"\AAIza[0-9A-Za-z_-]{35}",
        Edge::Word,
        Edge::Base64Url,
    ),
    Rule {
        id: "gcp-service-account-key",
        description: "Google Cloud service-account private key (JSON `private_key` member)",
        confidence: Confidence::High,
        anchors: &["\"private_key\""],
        before: 0,
        after: 8192,
        matcher: Matcher::PemBlock { json_key: true },
    },
    token(
        "azure-storage-account-key",
        "Azure storage account key in a connection string",
        &["AccountKey="],
        88,
        r"\AAccountKey=([A-Za-z0-9+/]{86}==)",
        Edge::Alnum,
        Edge::Base64,
    ),
    token(
        "azure-shared-access-key",
        "Azure Service Bus / Event Hubs shared access key in a connection string",
        &["SharedAccessKey="],
        44,
        r"\ASharedAccessKey=([A-Za-z0-9+/]{43}=)",
        Edge::Alnum,
        Edge::Base64,
    ),
    token(
        "github-personal-access-token",
        "GitHub classic personal access token",
        &["ghp_"],
        36,
        r"\Aghp_[A-Za-z0-9]{36}",
        Edge::Word,
        Edge::Word,
    ),
    token(
        "github-oauth-token",
        "GitHub OAuth access token",
        &["gho_"],
        36,
        r"\Agho_[A-Za-z0-9]{36}",
        Edge::Word,
        Edge::Word,
    ),
    token(
        "github-user-to-server-token",
        "GitHub App user-to-server token",
        &["ghu_"],
        36,
        r"\Aghu_[A-Za-z0-9]{36}",
        Edge::Word,
        Edge::Word,
    ),
    token(
        "github-server-to-server-token",
        "GitHub App installation (server-to-server) token",
        &["ghs_"],
        36,
        r"\Aghs_[A-Za-z0-9]{36}",
        Edge::Word,
        Edge::Word,
    ),
    token(
        "github-refresh-token",
        "GitHub refresh token",
        &["ghr_"],
        76,
        r"\Aghr_[A-Za-z0-9]{36,76}",
        Edge::Word,
        Edge::Word,
    ),
    token(
        "github-fine-grained-token",
        "GitHub fine-grained personal access token",
        &["github_pat_"],
        82,
        r"\Agithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
        Edge::Alnum,
        Edge::Word,
    ),
    token(
        "gitlab-personal-access-token",
        "GitLab personal access token",
        &["glpat-"],
        255,
        r"\Aglpat-[A-Za-z0-9_-]{20,255}",
        Edge::Word,
        Edge::Base64Url,
    ),
    token(
        "gitlab-token",
        "GitLab deploy, runner or pipeline-trigger token",
        &["gldt-", "glrt-", "glptt-"],
        255,
        r"\A(?:gldt|glrt|glptt)-[A-Za-z0-9_-]{20,255}",
        Edge::Word,
        Edge::Base64Url,
    ),
    Rule {
        id: "gitea-token",
        description: "Gitea / Forgejo access token (40 hex) assigned to a gitea token/key setting",
        confidence: Confidence::Medium,
        // No anchors of its own: `generic-secret-assignment` parses the same `…key = value`
        // hits and reports a gitea identifier with a 40-hex value under this rule.
        anchors: &[],
        before: matchers::MAX_IDENT_AROUND,
        after: matchers::ASSIGNMENT_AFTER,
        matcher: Matcher::Assignment(AssignmentKind::Gitea),
    },
    Rule {
        id: "bearer-token",
        description: "high-entropy credential after `Bearer` / `token` (HTTP Authorization style)",
        confidence: Confidence::Medium,
        anchors: BEARER_WORDS,
        before: 0,
        after: 1040,
        matcher: Matcher::Regex {
            pattern: r"\A(?:[Bb]earer|[Tt]oken|TOKEN)[ \t]{1,4}([A-Za-z0-9._~+/-]{20,1024}=*)",
            leading: Edge::Alnum,
            trailing: Edge::Base64,
            validate: Some(matchers::looks_random),
            context: None,
            follow: b" \t",
        },
    },
    Rule {
        id: "basic-auth-credentials",
        description: "HTTP Basic credentials (base64 `user:password`)",
        confidence: Confidence::Medium,
        anchors: &["Basic"],
        before: 0,
        after: 1040,
        matcher: Matcher::Regex {
            pattern: r"\ABasic[ \t]{1,4}([A-Za-z0-9+/]{8,1024}={0,2})",
            leading: Edge::Alnum,
            trailing: Edge::Base64,
            validate: Some(matchers::is_basic_credentials),
            context: None,
            follow: b" \t",
        },
    },
    Rule {
        id: "url-credentials",
        description: "password embedded in a URL (`scheme://user:password@host`)",
        confidence: Confidence::Medium,
        anchors: &["://"],
        before: matchers::MAX_SCHEME_LEN,
        after: matchers::MAX_USERINFO_LEN + 1,
        matcher: Matcher::UrlCredentials,
    },
    token(
        "anthropic-api-key",
        "Anthropic API or admin key",
        &["sk-ant-"],
        140,
        r"\Ask-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{80,120}",
        Edge::Alnum,
        Edge::Base64Url,
    ),
    token(
        "anthropic-oauth-token",
        "Anthropic OAuth access or refresh token (Claude subscriptions)",
        &["sk-ant-"],
        140,
        r"\Ask-ant-o[ar]t[0-9]{2}-[A-Za-z0-9_-]{80,120}",
        Edge::Alnum,
        Edge::Base64Url,
    ),
    Rule {
        id: "openai-api-key",
        description: "OpenAI API key (project, service-account, admin or legacy)",
        confidence: Confidence::High,
        anchors: &["sk-proj-", "sk-svcacct-", "sk-admin-", "T3BlbkFJ"],
        // The legacy format's `T3BlbkFJ` marker sits 23 bytes into the key.
        before: 23,
        after: 260,
        matcher: Matcher::Regex {
            pattern: r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,250}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}",
            leading: Edge::Alnum,
            trailing: Edge::Base64Url,
            validate: None,
            context: None,
            follow: b"",
        },
    },
    token(
        "slack-token",
        "Slack bot, user, app-configuration or workspace token",
        &["xox"],
        220,
        r"\Axox[abprse]-[0-9]{6,15}-[A-Za-z0-9-]{8,200}",
        Edge::Alnum,
        Edge::Base64Url,
    ),
    token(
        "slack-app-token",
        "Slack app-level token",
        &["xapp-"],
        120,
        r"\Axapp-[0-9]-[A-Z0-9]{8,14}-[0-9]{8,16}-[A-Za-z0-9]{32,80}",
        Edge::Alnum,
        Edge::Alnum,
    ),
    token(
        "slack-webhook-url",
        "Slack incoming-webhook / workflow URL",
        &["hooks.slack.com/"],
        110,
        r"\Ahooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{6,14}/[A-Z0-9]{6,14}/(?:[0-9]{6,20}/)?[A-Za-z0-9]{20,40}",
        Edge::Any,
        Edge::Alnum,
    ),
    Rule {
        id: "discord-webhook-url",
        description: "Discord webhook URL",
        confidence: Confidence::High,
        anchors: &["/api/webhooks/"],
        // Room for `discordapp.com` before the anchor.
        before: 14,
        after: 102,
        matcher: Matcher::Regex {
            pattern: r"discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,80}",
            leading: Edge::Any,
            trailing: Edge::Base64Url,
            validate: None,
            context: None,
            follow: b"",
        },
    },
    Rule {
        id: "telegram-bot-token",
        description: "Telegram bot token",
        confidence: Confidence::High,
        anchors: &[":AA"],
        before: 10,
        after: 33,
        matcher: Matcher::Regex {
            pattern: r"[0-9]{8,10}:AA[A-Za-z0-9_-]{33}",
            // `…/bot123:AA…` is the usual context, so letters may precede the digits.
            leading: Edge::Digit,
            trailing: Edge::Base64Url,
            validate: None,
            context: None,
            follow: b"",
        },
    },
    token(
        "stripe-secret-key",
        "Stripe live secret or restricted key",
        &["sk_live_", "rk_live_"],
        247,
        r"\A[sr]k_live_[A-Za-z0-9]{20,247}",
        Edge::Alnum,
        Edge::Word,
    ),
    token("npm-access-token", "npm access token", &["npm_"], 36, r"\Anpm_[A-Za-z0-9]{36}", Edge::Word, Edge::Word),
    token(
        "pypi-api-token",
        "PyPI (or TestPyPI) API token",
        &["pypi-AgE"],
        1040,
        r"\Apypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,1000}",
        Edge::Alnum,
        Edge::Base64Url,
    ),
    Rule {
        id: "private-key",
        description: "PEM private key block",
        confidence: Confidence::High,
        anchors: &["-----BEGIN"],
        before: 0,
        after: 8192,
        matcher: Matcher::PemBlock { json_key: false },
    },
    Rule {
        id: "jwt",
        description: "JSON Web Token (header decodes to JSON with `alg`)",
        confidence: Confidence::Medium,
        anchors: &["eyJ"],
        before: 0,
        after: 8192,
        matcher: Matcher::Regex {
            pattern: r"\AeyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{16,}",
            leading: Edge::Base64Url,
            trailing: Edge::Base64Url,
            validate: Some(matchers::is_jwt),
            context: None,
            follow: b"",
        },
    },
    Rule {
        id: "generic-secret-assignment",
        description: "high-entropy value assigned to a key/token/secret/credential field",
        confidence: Confidence::Medium,
        anchors: SECRET_ASSIGNMENT_WORDS,
        before: matchers::MAX_IDENT_AROUND,
        after: matchers::ASSIGNMENT_AFTER,
        matcher: Matcher::Assignment(AssignmentKind::Secret),
    },
    Rule {
        id: "generic-password-assignment",
        description: "non-trivial value assigned to a password field",
        confidence: Confidence::Low,
        anchors: PASSWORD_WORDS,
        before: matchers::MAX_IDENT_AROUND,
        after: matchers::ASSIGNMENT_AFTER,
        matcher: Matcher::Assignment(AssignmentKind::Password),
    },
];

/// Prefilter group of an anchor. Teddy is fastest with at most 32 literals, and its false
/// positives come mostly from short and common ones, so ordinary words and literals under 4 bytes
/// (group 0) get their own searcher and the distinctive vendor prefixes (group 1) keep a fast one.
pub(crate) fn anchor_group(anchor: &[u8]) -> usize {
    const WORDS: &[&[u8]] = &[b"key", b"token", b"secret", b"passw", b"bearer", b"basic"];
    usize::from(anchor.len() >= 4 && !WORDS.iter().any(|w| w.eq_ignore_ascii_case(anchor)))
}

/// Every built-in rule, for documentation and manifest validation.
pub fn rules() -> impl Iterator<Item = RuleInfo> {
    RULES.iter().map(|r| RuleInfo { id: r.id, description: r.description, confidence: r.confidence })
}

/// A rule with its regex compiled.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) rule: &'static Rule,
    regex: Option<Regex>,
    /// The rule reported instead when an assignment turns out to be a Gitea token.
    gitea: Option<&'static Rule>,
}

/// The bytes a rule may look at for one anchor hit, in the lane's coordinates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window<'a> {
    /// The lane's buffer; `buf[0]` is at lane offset `base`.
    pub(crate) buf: &'a [u8],
    pub(crate) base: usize,
    /// Window bounds (lane offsets).
    pub(crate) lo: usize,
    pub(crate) hi: usize,
    /// The anchor hit (lane offsets).
    pub(crate) anchor: usize,
    pub(crate) anchor_end: usize,
    /// `hi` is the real end of the input, not a cut made by the window size.
    pub(crate) at_eof: bool,
}

impl Window<'_> {
    /// The window's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[self.lo - self.base..self.hi - self.base]
    }

    /// The byte at lane offset `pos`, if it is in the buffer.
    pub(crate) fn byte_at(&self, pos: usize) -> Option<u8> {
        pos.checked_sub(self.base).and_then(|i| self.buf.get(i)).copied()
    }

    /// True if a match ending at `end` may be longer than the window lets us see.
    pub(crate) fn truncated(&self, end: usize) -> bool {
        end >= self.hi && !self.at_eof
    }

    /// Checks the bytes just outside `start..end` against the edge classes.
    pub(crate) fn edges_ok(&self, start: usize, end: usize, leading: Edge, trailing: Edge) -> bool {
        let before_ok = start == 0 || self.byte_at(start - 1).is_none_or(|b| !leading.blocks(b));
        let after_ok = end >= self.hi || !trailing.blocks(self.buf[end - self.base]);
        before_ok && after_ok
    }
}

impl CompiledRule {
    pub(crate) fn compile(rule: &'static Rule) -> Result<Self, DlpError> {
        let regex = match rule.matcher {
            Matcher::Regex { pattern, .. } => Some(
                regex::bytes::RegexBuilder::new(pattern)
                    .unicode(false)
                    .build()
                    .map_err(|source| DlpError::RuleRegex { rule_id: rule.id, source })?,
            ),
            _ => None,
        };
        let gitea = RULES.iter().find(|r| matches!(r.matcher, Matcher::Assignment(AssignmentKind::Gitea)));
        Ok(Self { rule, regex, gitea })
    }

    /// Evaluates the rule in `window`, appending matched spans (lane offsets) to `out`. Returns
    /// the rule the spans belong to (this one, except for a Gitea token found by the generic rule).
    pub(crate) fn eval(&self, window: &Window<'_>, out: &mut Vec<Range<usize>>) -> &'static Rule {
        match (self.rule.matcher, &self.regex) {
            (Matcher::Regex { leading, trailing, validate, context, follow, .. }, Some(regex)) => {
                // Cheap checks first: most hits of common anchors fail them, and a regex call
                // costs far more than a byte comparison.
                if !follow.is_empty() && window.byte_at(window.anchor_end).is_none_or(|b| !follow.contains(&b)) {
                    return self.rule;
                }
                let before = &window.buf[window.lo - window.base..window.anchor - window.base];
                if context.is_some_and(|needle| !contains_ignore_case(before, needle.as_bytes())) {
                    return self.rule;
                }
                let bytes = window.bytes();
                let mut at = 0;
                while at <= bytes.len() {
                    let Some(whole) = regex.find_at(bytes, at) else { break };
                    let (start, end) = (window.lo + whole.start(), window.lo + whole.end());
                    at = whole.end().max(whole.start() + 1);
                    if start > window.anchor {
                        break;
                    }
                    if end <= window.anchor || window.truncated(end) || !window.edges_ok(start, end, leading, trailing)
                    {
                        continue;
                    }
                    // Only rules with a capture group pay for capture extraction, and only on a match.
                    let group = if regex.captures_len() > 1 {
                        regex
                            .captures_at(bytes, whole.start())
                            .and_then(|caps| caps.iter().skip(1).flatten().next())
                            .map_or(whole.range(), |g| g.range())
                    } else {
                        whole.range()
                    };
                    let span = window.lo + group.start..window.lo + group.end;
                    if validate.is_none_or(|f| f(&bytes[group])) {
                        out.push(span);
                    }
                }
            }
            (Matcher::Assignment(kind), _) => {
                if matchers::assignment(kind, window, out) == Some(AssignmentKind::Gitea) {
                    return self.gitea.unwrap_or(self.rule);
                }
            }
            (Matcher::PemBlock { json_key }, _) => matchers::pem_block(json_key, window, out),
            (Matcher::UrlCredentials, _) => matchers::url_credentials(window, out),
            (Matcher::Regex { .. }, None) => {}
        }
        self.rule
    }
}

/// ASCII case-insensitive substring test (`needle` is lowercase).
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}
