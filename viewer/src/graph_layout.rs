//! A deterministic layered layout of a [`ModelSummary`]: one rank per layer, top to bottom,
//! components as chips inside each layer's box, pools in a column beside the layers with an
//! edge from each router to its pool. Pure geometry, so it is testable and snapshots are
//! stable.

use crate::data::model::{Component, ComponentKind, ModelSummary};
use eframe::egui::{Pos2, Rect, Vec2};

/// A chip inside a node: one component.
#[derive(Clone, Debug, PartialEq)]
pub struct Chip {
    pub rect: Rect,
    pub text: String,
    pub kind: ComponentKind,
    pub pool: Option<String>,
}

/// What a node stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Input,
    Layer,
    Pool,
    Output,
}

/// A box in the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub rect: Rect,
    pub kind: NodeKind,
    pub title: String,
    pub subtitle: String,
    pub chips: Vec<Chip>,
    /// Wrapped lines of hook point names.
    pub hooks: Vec<String>,
}

/// An edge between two points, optionally labelled.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub from: Pos2,
    pub to: Pos2,
    pub label: String,
    /// Router -> pool edges are drawn dashed and curved.
    pub routed: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GraphLayout {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub bounds: Rect,
}

const PAD: f32 = 10.0;
const TITLE_H: f32 = 34.0;
const CHIP_H: f32 = 24.0;
const LINE_H: f32 = 13.0;
const GAP_Y: f32 = 34.0;

/// Parameter counts as `1.2M`, `66.0k`, `512`.
pub fn fmt_count(n: usize) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

fn chip_text(c: &Component) -> String {
    if c.params > 0 {
        format!("{} {}", c.name, fmt_count(c.params))
    } else {
        c.name.clone()
    }
}

/// Lays out `m`; `text_w` measures a string's width in the chip/hook font.
pub fn layout(m: &ModelSummary, text_w: &dyn Fn(&str) -> f32) -> GraphLayout {
    let max_hook_w = 460.0;
    let mut nodes = Vec::new();
    let mut y = 0.0;
    let add = |kind,
               title: String,
               subtitle: String,
               comps: &[Component],
               hooks: &[String],
               y: &mut f32| {
        let chip_ws: Vec<f32> = comps.iter().map(|c| text_w(&chip_text(c)) + 16.0).collect();
        let chips_w: f32 =
            chip_ws.iter().sum::<f32>() + 6.0 * chip_ws.len().saturating_sub(1) as f32;
        let hook_lines = wrap(hooks, max_hook_w, text_w);
        let w = [
            text_w(&title) + 20.0,
            text_w(&subtitle),
            chips_w,
            hook_lines.iter().map(|l| text_w(l)).fold(0.0, f32::max),
        ]
        .into_iter()
        .fold(160.0, f32::max)
            + 2.0 * PAD;
        let h = TITLE_H
            + if comps.is_empty() { 0.0 } else { CHIP_H + 6.0 }
            + hook_lines.len() as f32 * LINE_H
            + PAD;
        let rect = Rect::from_min_size(Pos2::new(0.0, *y), Vec2::new(w, h));
        let mut x = PAD;
        let chips = comps
            .iter()
            .zip(&chip_ws)
            .map(|(c, &cw)| {
                let r = Rect::from_min_size(Pos2::new(x, *y + TITLE_H), Vec2::new(cw, CHIP_H));
                x += cw + 6.0;
                Chip {
                    rect: r,
                    text: chip_text(c),
                    kind: c.kind,
                    pool: c.pool.clone(),
                }
            })
            .collect();
        *y += h + GAP_Y;
        Node {
            rect,
            kind,
            title,
            subtitle,
            chips,
            hooks: hook_lines,
        }
    };
    let input_params: usize = m.inputs.iter().map(|c| c.params).sum();
    nodes.push(add(
        NodeKind::Input,
        "tokens -> embedding".into(),
        format!("{} parameters", fmt_count(input_params)),
        &m.inputs,
        &[],
        &mut y,
    ));
    for l in &m.layers {
        let mut title = format!("layer {} · {}", l.index, l.block);
        if !l.args.is_empty() {
            title.push_str(&format!("({})", l.args));
        }
        let mut subtitle = format!("{} parameters", fmt_count(l.params));
        if l.iterations > 1 {
            subtitle.push_str(&format!(" · repeat ×{}", l.iterations));
        }
        let hooks: Vec<String> = l.hooks.iter().map(|h| h.to_string()).collect();
        nodes.push(add(
            NodeKind::Layer,
            title,
            subtitle,
            &l.components,
            &hooks,
            &mut y,
        ));
    }
    let output_params: usize = m.outputs.iter().map(|c| c.params).sum();
    nodes.push(add(
        NodeKind::Output,
        "logits".into(),
        format!("{} parameters", fmt_count(output_params)),
        &m.outputs,
        &[],
        &mut y,
    ));

    // Centre the main column.
    let main_w = nodes.iter().map(|n| n.rect.width()).fold(0.0, f32::max);
    for n in &mut nodes {
        let dx = (main_w - n.rect.width()) / 2.0;
        shift(n, Vec2::new(dx, 0.0));
    }
    let mut edges: Vec<Edge> = nodes
        .windows(2)
        .map(|w| Edge {
            from: w[0].rect.center_bottom(),
            to: w[1].rect.center_top(),
            label: String::new(),
            routed: false,
        })
        .collect();

    // Pools beside the layers that use them.
    let pool_x = main_w + 140.0;
    let mut next_free = 0.0f32;
    for p in &m.pools {
        let first_user = p.used_by.first().map(|u| u.0);
        let target_y = first_user
            .and_then(|l| nodes.get(l + 1))
            .map_or(next_free, |n| n.rect.top());
        let top = target_y.max(next_free);
        let title = format!("pool {}[{}]", p.name, p.size);
        let subtitle = format!(
            "{} parameters ({} each)",
            fmt_count(p.params),
            fmt_count(p.params / p.size.max(1))
        );
        let module = vec![p.module.clone()];
        let lines = wrap(&module, 360.0, text_w);
        let w = [text_w(&title) + 20.0, text_w(&subtitle)]
            .into_iter()
            .chain(lines.iter().map(|l| text_w(l)))
            .fold(160.0, f32::max)
            + 2.0 * PAD;
        let h = TITLE_H + lines.len() as f32 * LINE_H + PAD;
        let rect = Rect::from_min_size(Pos2::new(pool_x, top), Vec2::new(w, h));
        next_free = rect.bottom() + GAP_Y;
        for &(layer, route) in &p.used_by {
            let Some(node) = nodes.get(layer + 1) else {
                continue;
            };
            let name = format!("route{route}");
            // Leave the layer's right edge level with the router's chip; several routers of
            // one layer leave at different heights.
            let chip_y = node
                .chips
                .iter()
                .find(|c| c.text.starts_with(&name))
                .map_or(node.rect.center().y, |c| c.rect.center().y);
            let from = Pos2::new(node.rect.right(), chip_y + 10.0 * route as f32);
            let router = m.layers[layer]
                .components
                .iter()
                .find(|c| c.name == name)
                .map_or(String::new(), |c| c.detail.clone());
            edges.push(Edge {
                from,
                to: rect.left_center(),
                label: router,
                routed: true,
            });
        }
        nodes.push(Node {
            rect,
            kind: NodeKind::Pool,
            title,
            subtitle,
            chips: Vec::new(),
            hooks: lines,
        });
    }
    let bounds = nodes
        .iter()
        .fold(Rect::NOTHING, |b, n| b.union(n.rect))
        .expand(20.0);
    GraphLayout {
        nodes,
        edges,
        bounds,
    }
}

fn shift(n: &mut Node, d: Vec2) {
    n.rect = n.rect.translate(d);
    for c in &mut n.chips {
        c.rect = c.rect.translate(d);
    }
}

/// Joins `items` with `, ` into lines no wider than `max_w`.
fn wrap(items: &[String], max_w: f32, text_w: &dyn Fn(&str) -> f32) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for it in items {
        let candidate = if cur.is_empty() {
            it.clone()
        } else {
            format!("{cur}, {it}")
        };
        if !cur.is_empty() && text_w(&candidate) > max_w {
            lines.push(std::mem::take(&mut cur) + ",");
            cur = it.clone();
        } else {
            cur = candidate;
        }
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}
