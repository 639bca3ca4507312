//! SVG primitives: axes with round ticks, panels, legends, bars and lines.

use super::series::{nice_step, Histogram};
use super::text::{escape, number, thousands};

const SVG_WIDTH_PX: f64 = 960.0;
const PLOT_LEFT_PX: f64 = 76.0;
const PLOT_RIGHT_PX: f64 = 24.0;
/// Space above the first panel for the chart title and the legend.
const CHART_HEAD_PX: f64 = 84.0;
const PANEL_HEIGHT_PX: f64 = 170.0;
/// Between two panels: the upper panel's tick labels and the lower one's caption.
const PANEL_GAP_PX: f64 = 64.0;
/// Below the last panel: tick labels and the axis title.
const CHART_FOOT_PX: f64 = 56.0;
/// Rough advance of one legend character at 13 px, to lay legend items out.
const LEGEND_CHAR_PX: f64 = 7.4;

/// A data range widened to round tick steps.
pub(super) struct Axis {
    min: f64,
    max: f64,
    step: f64,
}

impl Axis {
    pub(super) fn new(min: f64, max: f64, ticks_max: usize) -> Self {
        let step = nice_step(max - min, ticks_max);
        let lo = (min / step).floor() * step;
        let mut hi = (max / step).ceil() * step;
        if hi <= lo {
            hi = lo + step;
        }
        Self {
            min: lo,
            max: hi,
            step,
        }
    }

    fn ticks(&self) -> Vec<f64> {
        let count = ((self.max - self.min) / self.step).round() as usize;
        (0..=count)
            .map(|i| self.min + i as f64 * self.step)
            .collect()
    }

    /// Where `value` lies between min (0) and max (1).
    fn fraction(&self, value: f64) -> f64 {
        (value - self.min) / (self.max - self.min)
    }
}

/// A plot area of a chart, in pixels.
pub(super) struct Panel {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl Panel {
    /// The `index`th panel from the top of a chart.
    pub(super) fn nth(index: usize) -> Self {
        Self {
            left: PLOT_LEFT_PX,
            top: CHART_HEAD_PX + index as f64 * (PANEL_HEIGHT_PX + PANEL_GAP_PX),
            width: SVG_WIDTH_PX - PLOT_LEFT_PX - PLOT_RIGHT_PX,
            height: PANEL_HEIGHT_PX,
        }
    }

    fn x(&self, axis: &Axis, value: f64) -> f64 {
        self.left + axis.fraction(value) * self.width
    }

    fn y(&self, axis: &Axis, value: f64) -> f64 {
        self.top + self.height - axis.fraction(value) * self.height
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }

    /// Caption, grid, axes, tick labels and the y axis title (turned,
    /// left of the tick labels); the series go on top.
    pub(super) fn frame(&self, caption: &str, x: &Axis, y: &Axis, y_unit: &str) -> String {
        let mut svg = format!(
            "<text class=\"caption\" x=\"{:.1}\" y=\"{:.1}\">{}</text>\n\
             <text class=\"axis-title\" transform=\"translate(16 {:.1}) rotate(-90)\" \
             text-anchor=\"middle\">{}</text>\n",
            self.left,
            self.top - 12.0,
            escape(caption),
            self.top + self.height / 2.0,
            escape(y_unit),
        );
        for tick in y.ticks() {
            let py = self.y(y, tick);
            svg.push_str(&format!(
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#e5e7eb\"/>\
                 <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                self.left,
                self.left + self.width,
                self.left - 8.0,
                py + 4.0,
                number(tick, y.step),
            ));
        }
        for tick in x.ticks() {
            let px = self.x(x, tick);
            svg.push_str(&format!(
                "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#9ca3af\"/>\
                 <text class=\"tick\" x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                self.bottom(),
                self.bottom() + 5.0,
                self.bottom() + 18.0,
                number(tick, x.step),
            ));
        }
        svg.push_str(&format!(
            "<path d=\"M{:.1},{:.1}V{:.1}H{:.1}\" fill=\"none\" stroke=\"#6b7280\"/>\n",
            self.left,
            self.top,
            self.bottom(),
            self.left + self.width,
        ));
        svg
    }
}

#[derive(Clone, Copy)]
pub(super) enum LegendMark {
    Bar,
    Line,
}

/// Opens a chart's SVG with its title and legend, sized for `panels`.
pub(super) fn chart_open(
    id: &str,
    panels: usize,
    title: &str,
    legend: &[(LegendMark, &str, String)],
) -> String {
    let height = CHART_HEAD_PX
        + panels as f64 * PANEL_HEIGHT_PX
        + panels.saturating_sub(1) as f64 * PANEL_GAP_PX
        + CHART_FOOT_PX;
    let mut svg = format!(
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {SVG_WIDTH_PX} {height}\" \
         width=\"{SVG_WIDTH_PX}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">\n\
         <text class=\"title\" x=\"{PLOT_LEFT_PX}\" y=\"24\">{}</text>\n",
        escape(title),
        escape(title),
    );
    svg.push_str(&legend_items(legend));
    svg
}

/// Legend items in one row under the title, each a swatch then its label.
fn legend_items(items: &[(LegendMark, &str, String)]) -> String {
    let (y, mut x) = (46.0, PLOT_LEFT_PX);
    let mut svg = String::from("<g class=\"legend\">\n");
    for (mark, colour, label) in items {
        let swatch = match mark {
            LegendMark::Bar => format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>",
                y - 10.0
            ),
            LegendMark::Line => format!(
                "<line x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>",
                x + 20.0,
                y - 4.0,
                y - 4.0
            ),
        };
        let text_x = x + 26.0;
        svg.push_str(&format!(
            "{swatch}<text class=\"legend\" x=\"{text_x:.1}\" y=\"{y:.1}\">{}</text>\n",
            escape(label)
        ));
        x = text_x + label.chars().count() as f64 * LEGEND_CHAR_PX + 28.0;
    }
    svg.push_str("</g>\n");
    svg
}

/// One bar per non-empty bucket. A non-empty bucket is at least one pixel
/// tall, so a lone buyer in the tail stays visible.
pub(super) fn bars(
    panel: &Panel,
    x: &Axis,
    y: &Axis,
    histogram: &Histogram,
    class: &str,
    colour: &str,
) -> String {
    let mut svg = format!("<g class=\"series {class}\" fill=\"{colour}\">\n");
    let bucket_px = panel.x(x, histogram.width_ms) - panel.x(x, 0.0);
    // A gap between bars when they are wide enough to afford one.
    let gap_px = if bucket_px >= 4.0 { 1.0 } else { 0.0 };
    for (i, count) in histogram.counts.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let from_ms = i as f64 * histogram.width_ms;
        let top = panel.y(y, *count as f64).min(panel.bottom() - 1.0);
        svg.push_str(&format!(
            "<rect class=\"bar {class}\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\">\
             <title>{}–{} ms: {} purchases</title></rect>\n",
            panel.x(x, from_ms) + gap_px / 2.0,
            (bucket_px - gap_px).max(0.5),
            panel.bottom() - top,
            number(from_ms, histogram.width_ms),
            number(from_ms + histogram.width_ms, histogram.width_ms),
            thousands(*count),
        ));
    }
    svg.push_str("</g>\n");
    svg
}

/// A polyline through the points; its last value is kept as `data-last`.
pub(super) fn line(
    panel: &Panel,
    x: &Axis,
    y: &Axis,
    xs: &[f64],
    ys: &[f64],
    class: &str,
    colour: &str,
) -> String {
    let points: Vec<String> = xs
        .iter()
        .zip(ys)
        .map(|(vx, vy)| format!("{:.1},{:.1}", panel.x(x, *vx), panel.y(y, *vy)))
        .collect();
    format!(
        "<polyline class=\"series {class}\" data-last=\"{}\" points=\"{}\" fill=\"none\" \
         stroke=\"{colour}\" stroke-width=\"2.5\" stroke-linejoin=\"round\"/>\n",
        ys.last().copied().unwrap_or(0.0),
        points.join(" "),
    )
}

pub(super) fn axis_title(panel: &Panel, text: &str) -> String {
    format!(
        "<text class=\"axis-title\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
        panel.left + panel.width / 2.0,
        panel.bottom() + 40.0,
        escape(text),
    )
}
