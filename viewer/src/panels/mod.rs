//! Panels: each draws one view of a [`crate::data::Snapshot`]; what it shows is a function of
//! the snapshot and its small view state (selection, step), nothing else.

pub mod attention;
pub mod bases;
pub mod curves;
pub mod head_tables;
pub mod model;
pub mod problems;
pub mod programs;
pub mod routing;

/// The viewer's tabs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tab {
    Curves,
    Attention,
    Heads,
    Routing,
    Programs,
    Model,
}

impl Tab {
    pub const ALL: [Tab; 6] = [
        Tab::Curves,
        Tab::Attention,
        Tab::Heads,
        Tab::Routing,
        Tab::Programs,
        Tab::Model,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Curves => "Curves",
            Tab::Attention => "Attention",
            Tab::Heads => "Head tables",
            Tab::Routing => "Routing",
            Tab::Programs => "Programs",
            Tab::Model => "Model",
        }
    }

    /// Parses a tab name as given on the command line (`curves`, `attention`, `heads`,
    /// `routing`/`mom`/`moice`, `programs`, `model`).
    pub fn parse(s: &str) -> Option<Tab> {
        match s.to_ascii_lowercase().as_str() {
            "curves" => Some(Tab::Curves),
            "attention" | "attn" => Some(Tab::Attention),
            "heads" | "head_tables" | "head-tables" => Some(Tab::Heads),
            "routing" | "mom" | "moice" => Some(Tab::Routing),
            "programs" | "program" => Some(Tab::Programs),
            "model" => Some(Tab::Model),
            _ => None,
        }
    }
}
