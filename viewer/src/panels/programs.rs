//! Programs: the results `weft run` wrote to `programs/*.json`, one at a time: attention
//! against distance per head (HoPE), Batch-ICL accuracy against the injection layer, ICL
//! accuracy per demonstration order, length / needle / shots sweeps, the final-layer
//! intervention table; any other probe as pretty-printed JSON.

use crate::data::programs::{
    fmt_f64, AttentionDistance, BatchIcl, FinalTable, IclOrders, LengthSweep, NeedleSweep,
    ProbeResult, Program, ShotsSweep,
};
use crate::data::Snapshot;
use crate::panels::curves::palette;
use eframe::egui::{self, Color32, RichText};
use egui_plot::{
    Bar, BarChart, HLine, Legend, Line, LineStyle, MarkerShape, Plot, PlotPoints, PlotUi, Points,
    VLine,
};

/// What the Programs panel shows.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramsView {
    /// The chosen file (`None`: the first).
    pub selected: Option<String>,
    /// `attention_distance`: the layer drawn.
    pub layer: usize,
    /// `attention_distance`: mean |w| instead of the signed mean.
    pub abs: bool,
    /// `attention_distance`: distance on a log axis.
    pub log_distance: bool,
}

impl Default for ProgramsView {
    fn default() -> Self {
        ProgramsView {
            selected: None,
            layer: 0,
            abs: false,
            log_distance: true,
        }
    }
}

const ERROR: Color32 = Color32::from_rgb(255, 120, 110);
const REFERENCE: Color32 = Color32::from_gray(170);
const BEST: Color32 = Color32::from_rgb(250, 210, 90);
/// Most characters of JSON shown for an unknown probe (a big table would slow every frame).
const MAX_JSON: usize = 20_000;

/// Draws the panel.
pub fn show(ui: &mut egui::Ui, snap: &Snapshot, view: &mut ProgramsView) {
    let programs = &snap.programs;
    if programs.is_empty() {
        ui.label(
            "No program results: `weft run SPEC PROGRAM --out RUN_DIR` writes \
             RUN_DIR/programs/PROGRAM.json.",
        );
        return;
    }
    let index = view
        .selected
        .as_ref()
        .and_then(|f| programs.iter().position(|e| &e.file == f))
        .unwrap_or(0);
    egui::Panel::left("programs-list")
        .resizable(false)
        .exact_size(210.0)
        .show(ui, |ui| {
            ui.strong(format!("{} program results", programs.len()));
            ui.add_space(4.0);
            egui::ScrollArea::vertical()
                .id_salt("programs-list-scroll")
                .show(ui, |ui| {
                    for (i, e) in programs.iter().enumerate() {
                        let text = match &e.program {
                            Ok(p) if p.result.is_ok() => {
                                RichText::new(format!("{}\n{}", p.name, p.probe))
                            }
                            Ok(p) => RichText::new(format!("{}\n{} (bad result)", p.name, p.probe))
                                .color(ERROR),
                            Err(_) => RichText::new(format!("{}\nunreadable", e.file)).color(ERROR),
                        };
                        let r = ui
                            .selectable_label(i == index, text)
                            .on_hover_text(format!("programs/{}", e.file));
                        if r.clicked() {
                            view.selected = Some(e.file.clone());
                        }
                    }
                });
        });
    let entry = &programs[index];
    match &entry.program {
        Err(e) => {
            ui.heading(&entry.file);
            ui.colored_label(ERROR, format!("programs/{}: {e}", entry.file));
        }
        Ok(p) => program(ui, p, view),
    }
}

fn program(ui: &mut egui::Ui, p: &Program, view: &mut ProgramsView) {
    ui.horizontal(|ui| {
        ui.heading(&p.name);
        ui.label(RichText::new(&p.probe).monospace());
    });
    let mut meta = Vec::new();
    if let Some(s) = &p.spec {
        meta.push(format!("spec {s}"));
    }
    if let Some(m) = &p.model {
        meta.push(format!("model {m}"));
    }
    meta.push(match &p.weights {
        Some(w) => format!("weights {w}"),
        None => "seeded initialisation".into(),
    });
    if let Some(s) = p.seed {
        meta.push(format!("seed {s}"));
    }
    if let Some(b) = &p.backend {
        meta.push(format!("backend {b}"));
    }
    ui.weak(meta.join(" · "));
    if !p.args.is_empty() {
        ui.weak(format!("args: {}", p.args));
    }
    let result = match &p.result {
        Ok(r) => r,
        Err(e) => {
            ui.colored_label(
                ERROR,
                format!("this `{}` result cannot be drawn: {e}", p.probe),
            );
            json(ui, &p.pretty);
            return;
        }
    };
    if !matches!(result, ProbeResult::FinalLayer(_) | ProbeResult::Other) && !p.scalars.is_empty() {
        let line: Vec<String> = p
            .scalars
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        ui.label(line.join("    "));
    }
    ui.add_space(4.0);
    match result {
        ProbeResult::AttentionDistance(d) => distance(ui, d, view),
        ProbeResult::BatchIcl(b) => batch_icl(ui, b),
        ProbeResult::IclOrders(o) => orders(ui, o),
        ProbeResult::LengthSweep(s) => length_sweep(ui, s),
        ProbeResult::NeedleSweep(s) => needle_sweep(ui, s),
        ProbeResult::ShotsSweep(s) => shots_sweep(ui, s),
        ProbeResult::FinalLayer(t) => final_table(ui, t),
        ProbeResult::Other => json(ui, &p.pretty),
    }
}

/// A plot filling `w` × `h` with the shared look: legend, labelled axes, no scroll zoom.
fn plot<'a>(id: &str, x: &str, y: &str, w: f32, h: f32) -> Plot<'a> {
    Plot::new(id)
        .legend(Legend::default())
        .width(w)
        .height(h)
        .x_axis_label(x.to_string())
        .y_axis_label(y.to_string())
        .allow_scroll(false)
}

/// x values on a log2 axis (labels in true values) when they are all positive and span a
/// factor of 8 or more: lengths and shot counts double.
fn log2_axis(xs: &[f64]) -> bool {
    let (lo, hi) = xs.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| {
        (lo.min(x), hi.max(x))
    });
    lo > 0.0 && hi / lo >= 8.0
}

fn series(xs: &[f64], ys: &[f64], log2: bool) -> Vec<[f64; 2]> {
    xs.iter()
        .zip(ys)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(&x, &y)| [if log2 { x.log2() } else { x }, y])
        .collect()
}

/// A line with a marker at every point.
fn line_points(p: &mut PlotUi, name: &str, pts: Vec<[f64; 2]>, color: Color32) {
    p.line(
        Line::new(name, PlotPoints::from(pts.clone()))
            .color(color)
            .width(2.0),
    );
    p.points(
        Points::new(name, PlotPoints::from(pts))
            .color(color)
            .radius(3.5)
            .shape(MarkerShape::Circle)
            .filled(true),
    );
}

fn reference(p: &mut PlotUi, name: &str, y: f64, color: Color32) {
    if y.is_finite() {
        p.hline(
            HLine::new(format!("{name} {}", fmt_f64(y)), y)
                .color(color)
                .style(LineStyle::dashed_loose())
                .width(1.5),
        );
    }
}

fn with_log2_axis<'a>(plot: Plot<'a>, log2: bool) -> Plot<'a> {
    if log2 {
        plot.x_axis_formatter(|m, _| fmt_f64(m.value.exp2().round()))
    } else {
        plot
    }
}

/// One curve per head of the chosen layer: mean weight against distance Δ.
fn distance(ui: &mut egui::Ui, d: &AttentionDistance, view: &mut ProgramsView) {
    let layers = d.layers();
    if layers == 0 {
        ui.label("The result has no layers.");
        return;
    }
    view.layer = view.layer.min(layers - 1);
    let has_abs = d.mean_abs.is_some();
    ui.horizontal(|ui| {
        ui.label("layer");
        for l in 0..layers {
            ui.selectable_value(&mut view.layer, l, l.to_string());
        }
        ui.separator();
        ui.selectable_value(&mut view.abs, false, "mean w");
        if has_abs {
            ui.selectable_value(&mut view.abs, true, "mean |w|");
        }
        ui.separator();
        ui.checkbox(&mut view.log_distance, "log distance");
    });
    if ui.input(|i| i.key_pressed(egui::Key::ArrowDown)) {
        view.layer = (view.layer + 1).min(layers - 1);
    }
    if ui.input(|i| i.key_pressed(egui::Key::ArrowUp)) {
        view.layer = view.layer.saturating_sub(1);
    }
    let cube = match (&d.mean_abs, view.abs) {
        (Some(a), true) => a,
        _ => &d.mean,
    };
    let heads = &cube[view.layer];
    let log = view.log_distance;
    let w = ui.available_width();
    let h = (ui.available_height() - 24.0).max(160.0);
    let x_label = if log {
        "distance Δ = query − key (log scale; Δ = 0 omitted)"
    } else {
        "distance Δ = query − key"
    };
    let y_label = if view.abs {
        "mean |attention weight|"
    } else {
        "mean attention weight"
    };
    let mut plot = plot("program-distance", x_label, y_label, w, h).include_y(0.0);
    if log {
        plot = plot.x_axis_formatter(|m, _| fmt_f64(10f64.powf(m.value).round()));
    }
    plot.show(ui, |p| {
        for (h, curve) in heads.iter().enumerate() {
            let pts: Vec<[f64; 2]> = curve
                .iter()
                .enumerate()
                .filter(|(dist, v)| v.is_finite() && (!log || *dist > 0))
                .map(|(dist, &v)| {
                    let x = if log {
                        (dist as f64).log10()
                    } else {
                        dist as f64
                    };
                    [x, v]
                })
                .collect();
            p.line(
                Line::new(format!("head {h}"), PlotPoints::from(pts))
                    .color(palette(h))
                    .width(1.5),
            );
        }
    });
    ui.weak(format!(
        "layer {} of {layers}: {} heads, Δ = 0..{} (up/down arrow keys change the layer)",
        view.layer,
        heads.len(),
        d.len.saturating_sub(1)
    ));
}

/// Accuracy against the injection layer, with the zero-shot (and N-shot) references.
fn batch_icl(ui: &mut egui::Ui, b: &BatchIcl) {
    let w = ui.available_width();
    let h = (ui.available_height() - 24.0).max(160.0);
    let last = b.layers.iter().copied().fold(f64::NAN, f64::max);
    plot("program-batch-icl", "injection layer k", "accuracy", w, h)
        .include_y(0.0)
        .include_y(1.0)
        .show(ui, |p| {
            line_points(
                p,
                "Batch-ICL",
                series(&b.layers, &b.accuracy, false),
                palette(0),
            );
            for (i, (name, y)) in b.references.iter().enumerate() {
                let color = if name == "zero-shot" {
                    REFERENCE
                } else {
                    palette(i + 2)
                };
                reference(p, name, *y, color);
            }
            if let Some(k) = b.best_layer.filter(|k| k.is_finite()) {
                p.vline(
                    VLine::new(format!("best k = {}", fmt_f64(k)), k)
                        .color(BEST)
                        .width(1.0),
                );
            }
        });
    if b.layers.len() > 1 {
        ui.weak(format!(
            "k = {} injects nothing (the zero-shot pass); the dashed lines are the references \
             the result carries",
            fmt_f64(last)
        ));
    }
}

/// Accuracy per demonstration order (bars), with the mean and the oracle bounds.
fn orders(ui: &mut egui::Ui, o: &IclOrders) {
    let w = ui.available_width();
    let h = (ui.available_height() - 24.0).max(160.0);
    let bars: Vec<Bar> = o
        .by_order
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_finite())
        .map(|(i, &a)| {
            Bar::new(i as f64, a)
                .width(0.8)
                .fill(palette(1))
                .name(format!("order {i}"))
        })
        .collect();
    plot(
        "program-orders",
        "order (lexicographic permutation index)",
        "accuracy",
        w,
        h,
    )
    .include_y(0.0)
    .include_y(1.0)
    .show(ui, |p| {
        p.bar_chart(BarChart::new("accuracy per order", bars).color(palette(1)));
        reference(p, "mean", o.mean, palette(0));
        reference(p, "best order per query", o.best, palette(2));
        reference(p, "worst order per query", o.worst, palette(3));
    });
    ui.weak("best / worst: the best and the worst order chosen per query (oracle bounds)");
}

/// Two plots side by side: accuracy and (when present) loss against `xs`; `marks` adds
/// reference lines to each (its flag: the loss plot).
#[allow(clippy::too_many_arguments)]
fn accuracy_and_loss(
    ui: &mut egui::Ui,
    id: &str,
    x_label: &str,
    xs: &[f64],
    accuracy: &[f64],
    loss: Option<&[f64]>,
    log2: bool,
    marks: &dyn Fn(&mut PlotUi, bool),
) {
    let cols = if loss.is_some() { 2 } else { 1 };
    let w = (ui.available_width() - 12.0 * (cols - 1) as f32) / cols as f32;
    let h = (ui.available_height() - 24.0).max(160.0);
    let link = egui::Id::unique(id).with("x");
    ui.horizontal_top(|ui| {
        ui.spacing_mut().item_spacing.x = 12.0;
        with_log2_axis(plot(&format!("{id}-acc"), x_label, "accuracy", w, h), log2)
            .include_y(0.0)
            .include_y(1.0)
            .link_axis(link, [true, false])
            .show(ui, |p| {
                line_points(p, "accuracy", series(xs, accuracy, log2), palette(0));
                marks(p, false);
            });
        if let Some(loss) = loss {
            with_log2_axis(plot(&format!("{id}-loss"), x_label, "loss", w, h), log2)
                .include_y(0.0)
                .link_axis(link, [true, false])
                .show(ui, |p| {
                    line_points(p, "loss", series(xs, loss, log2), palette(1));
                    marks(p, true);
                });
        }
    });
}

fn length_sweep(ui: &mut egui::Ui, s: &LengthSweep) {
    let log2 = log2_axis(&s.lengths);
    let train = s.train_len.filter(|t| t.is_finite() && *t > 0.0);
    let marks = |p: &mut PlotUi, _loss: bool| {
        if let Some(t) = train {
            let x = if log2 { t.log2() } else { t };
            p.vline(
                VLine::new(format!("train length {}", fmt_f64(t)), x)
                    .color(REFERENCE)
                    .style(LineStyle::dashed_loose()),
            );
        }
    };
    accuracy_and_loss(
        ui,
        "program-length",
        "evaluation length (tokens)",
        &s.lengths,
        &s.accuracy,
        s.loss.as_deref(),
        log2,
        &marks,
    );
}

fn needle_sweep(ui: &mut egui::Ui, s: &NeedleSweep) {
    let x_label = match s.len {
        Some(l) if l.is_finite() => {
            format!("needle depth (0 = start, 1 = end of {} tokens)", fmt_f64(l))
        }
        _ => "needle depth (0 = start, 1 = end)".into(),
    };
    accuracy_and_loss(
        ui,
        "program-needle",
        &x_label,
        &s.positions,
        &s.accuracy,
        s.loss.as_deref(),
        false,
        &|_, _| {},
    );
}

fn shots_sweep(ui: &mut egui::Ui, s: &ShotsSweep) {
    let log2 = log2_axis(&s.shots);
    let (zero, zero_loss) = (s.zero_shot, s.zero_shot_loss);
    accuracy_and_loss(
        ui,
        "program-shots",
        "demonstrations (shots)",
        &s.shots,
        &s.accuracy,
        s.loss.as_deref(),
        log2,
        &|p, loss| {
            if let Some(z) = if loss { zero_loss } else { zero } {
                reference(p, "zero-shot", z, REFERENCE);
            }
        },
    );
}

/// The before/after statistics side by side, then the other fields.
fn final_table(ui: &mut egui::Ui, t: &FinalTable) {
    egui::Grid::new("program-table")
        .striped(true)
        .num_columns(3)
        .min_col_width(120.0)
        .show(ui, |ui| {
            for (k, v) in &t.rows[..t.rows.len().min(2)] {
                ui.label(RichText::new(k).monospace());
                ui.label(v);
                ui.end_row();
            }
            if !t.pairs.is_empty() {
                ui.strong("statistic");
                ui.strong("before");
                ui.strong("after");
                ui.end_row();
                for (k, before, after) in &t.pairs {
                    ui.label(RichText::new(k).monospace());
                    ui.label(before);
                    ui.label(after);
                    ui.end_row();
                }
            }
            for (k, v) in t.rows.iter().skip(2) {
                ui.label(RichText::new(k).monospace());
                ui.label(v);
                ui.end_row();
            }
        });
}

fn json(ui: &mut egui::Ui, pretty: &str) {
    egui::ScrollArea::both()
        .id_salt("program-json")
        .show(ui, |ui| {
            if pretty.len() > MAX_JSON {
                let cut = (0..=MAX_JSON)
                    .rev()
                    .find(|&i| pretty.is_char_boundary(i))
                    .unwrap_or(0);
                ui.label(RichText::new(&pretty[..cut]).monospace());
                ui.weak(format!("… {} more characters", pretty.len() - cut));
            } else {
                ui.label(RichText::new(pretty).monospace());
            }
        });
}
