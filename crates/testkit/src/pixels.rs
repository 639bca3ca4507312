//! Judging a screenshot: were the charts really drawn? Each series is
//! drawn in a colour of its own, so its pixels can be found and measured
//! (how many, over how wide and how tall a stretch). A legend swatch or an
//! axis covers far less than a drawn series, which is what the checks
//! rely on; every test using this keeps a control that a page without its
//! series fails.

/// Per channel, for anti-aliasing and colour management.
const COLOUR_TOLERANCE: u8 = 24;

/// A decoded PNG, 8-bit RGB.
pub struct Image {
    width: usize,
    rgb: Vec<u8>,
}

impl Image {
    pub fn decode(png_bytes: &[u8]) -> anyhow::Result<Self> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info()?;
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| anyhow::anyhow!("a PNG too large to decode"))?;
        let mut buffer = vec![0; size];
        let info = reader.next_frame(&mut buffer)?;
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => anyhow::bail!("unexpected screenshot colour type {other:?}"),
        };
        let rgb = buffer[..info.buffer_size()]
            .chunks_exact(channels)
            .flat_map(|pixel| pixel[..3].to_vec())
            .collect();
        Ok(Self {
            width: info.width as usize,
            rgb,
        })
    }

    /// Where pixels of (about) `colour` are.
    pub fn find(&self, colour: [u8; 3]) -> Found {
        let mut found = Found::default();
        for (i, pixel) in self.rgb.chunks_exact(3).enumerate() {
            let near = pixel
                .iter()
                .zip(colour)
                .all(|(got, want)| got.abs_diff(want) <= COLOUR_TOLERANCE);
            if near {
                found.add(i % self.width, i / self.width);
            }
        }
        found
    }
}

/// The pixels of one colour: how many, and the box around them.
#[derive(Debug, Default)]
pub struct Found {
    pub pixels: usize,
    x_min: usize,
    x_max: usize,
    y_min: usize,
    y_max: usize,
}

impl Found {
    fn add(&mut self, x: usize, y: usize) {
        if self.pixels == 0 {
            (self.x_min, self.x_max, self.y_min, self.y_max) = (x, x, y, y);
        }
        self.pixels += 1;
        self.x_min = self.x_min.min(x);
        self.x_max = self.x_max.max(x);
        self.y_min = self.y_min.min(y);
        self.y_max = self.y_max.max(y);
    }

    pub fn width(&self) -> usize {
        if self.pixels == 0 {
            0
        } else {
            self.x_max - self.x_min + 1
        }
    }

    pub fn height(&self) -> usize {
        if self.pixels == 0 {
            0
        } else {
            self.y_max - self.y_min + 1
        }
    }
}

/// What a drawn series must cover: far more than its legend swatch, spread
/// across its chart (and up or down it, for a series that moves).
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub colour: [u8; 3],
    pub pixels_min: usize,
    pub width_px_min: usize,
    pub height_px_min: usize,
}

/// The series that did not show as expected, each with what was seen.
pub fn missing_series(image: &Image, expected: &[Series]) -> Vec<String> {
    expected
        .iter()
        .filter_map(|expect| {
            let found = image.find(expect.colour);
            let drawn = found.pixels >= expect.pixels_min
                && found.width() >= expect.width_px_min
                && found.height() >= expect.height_px_min;
            (!drawn).then(|| {
                format!(
                    "{}: {} pixels over {}×{} px (want ≥ {} pixels over ≥ {}×{} px)",
                    expect.name,
                    found.pixels,
                    found.width(),
                    found.height(),
                    expect.pixels_min,
                    expect.width_px_min,
                    expect.height_px_min
                )
            })
        })
        .collect()
}
