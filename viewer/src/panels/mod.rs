//! Panels: each draws one view of a [`crate::data::Snapshot`]; what it shows is a function of
//! the snapshot and its small view state (selection, step), nothing else.

pub mod attention;
pub mod curves;
pub mod head_tables;
pub mod model;
pub mod problems;
pub mod routing;

/// The viewer's tabs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tab {
    Curves,
    Attention,
    Heads,
    Routing,
    Model,
}

impl Tab {
    pub const ALL: [Tab; 5] = [
        Tab::Curves,
        Tab::Attention,
        Tab::Heads,
        Tab::Routing,
        Tab::Model,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Curves => "Curves",
            Tab::Attention => "Attention",
            Tab::Heads => "Head tables",
            Tab::Routing => "MoM routing",
            Tab::Model => "Model",
        }
    }

    /// Parses a tab name as given on the command line (`curves`, `attention`, `heads`,
    /// `routing`/`mom`, `model`).
    pub fn parse(s: &str) -> Option<Tab> {
        match s.to_ascii_lowercase().as_str() {
            "curves" => Some(Tab::Curves),
            "attention" | "attn" => Some(Tab::Attention),
            "heads" | "head_tables" | "head-tables" => Some(Tab::Heads),
            "routing" | "mom" => Some(Tab::Routing),
            "model" => Some(Tab::Model),
            _ => None,
        }
    }
}
