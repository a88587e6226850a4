//! A YAML tree that remembers where every node was written.
//!
//! Built from yaml-rust2's event stream so that each mapping key, value and list item carries its
//! line and column; the schema layer turns those into errors that point at the exact spot. Only the
//! YAML a manifest needs is accepted: anchors, aliases, tags and non-string keys are refused with a
//! clear message rather than half-supported.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based position in the frontmatter text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl From<Marker> for Pos {
    fn from(m: Marker) -> Self {
        // yaml-rust2 reports 1-based lines and 0-based columns.
        Pos { line: m.line(), col: m.col() + 1 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `~`, `null` or nothing.
    Null,
    /// A scalar and whether it was quoted (quoted scalars are always strings).
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

/// A YAML problem at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub message: String,
    pub pos: Pos,
    pub hint: Option<String>,
    /// The key path being read when the error happened, e.g. `egress.routes[0]`.
    pub key: Option<String>,
}

impl Node {
    /// A short human name for the node's type, for "must be a list, found a mapping".
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "nothing",
            NodeKind::Scalar { text, quoted } => {
                if *quoted {
                    "a string"
                } else if is_bool(text).is_some() {
                    "a boolean"
                } else if text.parse::<i64>().is_ok() {
                    "a number"
                } else {
                    "a string"
                }
            }
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// YAML 1.2 core-schema booleans, plus nothing else: `yes`/`no` stay strings.
pub fn is_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(source: &str) -> Result<Node, YamlError> {
    let mut stack: Vec<Frame> = Vec::new();
    parse_into(source, &mut stack).map_err(|mut e| {
        if e.key.is_none() {
            e.key = key_path(&stack);
        }
        e
    })
}

/// The dotted path of the frames still open: where the parser was when it stopped.
fn key_path(stack: &[Frame]) -> Option<String> {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Seq(_, items) => path.push_str(&format!("[{}]", items.len())),
            Frame::Map(_, entries, pending) => {
                let Some(name) = pending.as_ref().map(|k| &k.name).or(entries.last().map(|(k, _)| &k.name)) else {
                    continue;
                };
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(name);
            }
        }
    }
    (!path.is_empty()).then_some(path)
}

fn parse_into(source: &str, stack: &mut Vec<Frame>) -> Result<Node, YamlError> {
    let mut parser = Parser::new_from_str(source);
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            message: format!("invalid YAML: {}", e.info()),
            pos: (*e.marker()).into(),
            hint: Some("check indentation and quoting; values containing `: ` or `#` need quotes".into()),
            key: None,
        })?;
        let pos = Pos::from(mark);
        let node = match event {
            Event::StreamStart | Event::Nothing => continue,
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        message: "frontmatter holds more than one YAML document".into(),
                        pos,
                        hint: Some("a manifest's frontmatter is a single mapping between two `---` lines".into()),
                        key: None,
                    });
                }
                continue;
            }
            Event::DocumentEnd => continue,
            Event::Alias(_) => {
                return Err(YamlError {
                    message: "YAML aliases (`*name`) are not supported in manifests".into(),
                    pos,
                    hint: Some("write the value out; use `extends` to share settings between bottles".into()),
                    key: None,
                });
            }
            Event::Scalar(text, style, anchor, tag) => {
                refuse_anchor_or_tag(anchor, tag.is_some(), pos)?;
                let quoted = !matches!(style, TScalarStyle::Plain);
                if !quoted && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                    Node { kind: NodeKind::Null, pos }
                } else {
                    Node { kind: NodeKind::Scalar { text, quoted }, pos }
                }
            }
            Event::SequenceStart(anchor, tag) => {
                refuse_anchor_or_tag(anchor, tag.is_some(), pos)?;
                stack.push(Frame::Seq(pos, Vec::new()));
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                refuse_anchor_or_tag(anchor, tag.is_some(), pos)?;
                stack.push(Frame::Map(pos, Vec::new(), None));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, items)) => Node { kind: NodeKind::Seq(items), pos: p },
                _ => unreachable_structure(pos)?,
            },
            Event::MappingEnd => match stack.pop() {
                // yaml-rust2 marks a block mapping after its first key; the key is what a reader looks for.
                Some(Frame::Map(p, entries, _)) => {
                    Node { pos: entries.first().map_or(p, |(k, _)| k.pos), kind: NodeKind::Map(entries) }
                }
                _ => unreachable_structure(pos)?,
            },
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                None => {
                    let name = match node.kind {
                        NodeKind::Scalar { text, .. } => text,
                        NodeKind::Null => {
                            return Err(YamlError {
                                message: "empty mapping key".into(),
                                pos: node.pos,
                                hint: None,
                                key: None,
                            });
                        }
                        _ => {
                            return Err(YamlError {
                                message: "mapping keys must be plain strings".into(),
                                pos: node.pos,
                                hint: None,
                                key: None,
                            });
                        }
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                        let line = first.pos.line;
                        let e = YamlError {
                            message: format!("duplicate key `{name}` (first set on line {line})"),
                            pos: node.pos,
                            hint: Some("remove one of the two entries".into()),
                            key: None,
                        };
                        // The path of the enclosing frames, then the duplicated key itself.
                        *pending = Some(Key { name: name.clone(), pos: node.pos });
                        return Err(e);
                    }
                    *pending = Some(Key { name, pos: node.pos });
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    Ok(root.unwrap_or(Node { kind: NodeKind::Map(Vec::new()), pos: Pos { line: 1, col: 1 } }))
}

enum Frame {
    Seq(Pos, Vec<Node>),
    Map(Pos, Vec<(Key, Node)>, Option<Key>),
}

fn refuse_anchor_or_tag(anchor: usize, tagged: bool, pos: Pos) -> Result<(), YamlError> {
    if anchor != 0 {
        return Err(YamlError {
            message: "YAML anchors (`&name`) are not supported in manifests".into(),
            pos,
            hint: Some("use `extends` to share settings between bottles".into()),
            key: None,
        });
    }
    if tagged {
        return Err(YamlError {
            message: "YAML tags (`!tag`) are not supported in manifests".into(),
            pos,
            hint: None,
            key: None,
        });
    }
    Ok(())
}

fn unreachable_structure(pos: Pos) -> Result<Node, YamlError> {
    Err(YamlError { message: "unbalanced YAML structure".into(), pos, hint: None, key: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_and_order() {
        let n = parse("a: 1\nb:\n  - x\n  - \"y\"\n").unwrap();
        let NodeKind::Map(entries) = n.kind else { panic!() };
        assert_eq!(entries[0].0.name, "a");
        assert_eq!(entries[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(entries[1].0.pos, Pos { line: 2, col: 1 });
        let NodeKind::Seq(items) = &entries[1].1.kind else { panic!() };
        assert_eq!(items[1].pos, Pos { line: 4, col: 5 });
        assert_eq!(items[1].kind, NodeKind::Scalar { text: "y".into(), quoted: true });
    }

    #[test]
    fn empty_is_an_empty_map() {
        assert_eq!(parse("").unwrap().kind, NodeKind::Map(vec![]));
        assert_eq!(parse("# only a comment\n").unwrap().kind, NodeKind::Map(vec![]));
    }

    #[test]
    fn refuses_duplicates_aliases_and_tags() {
        assert!(parse("a: 1\na: 2\n").unwrap_err().message.contains("duplicate key `a`"));
        assert!(parse("a: &x 1\nb: *x\n").unwrap_err().message.contains("anchors"));
        assert!(parse("a: !!str 1\n").unwrap_err().message.contains("tags"));
        let e = parse("a: [1, 2\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML"), "{e:?}");
    }
}
