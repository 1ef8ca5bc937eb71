//! Seed 001's tiling of one large image into overlapping tiles
//! (`../shared/SCIENCE.md`): nearly square tiles of about equal area,
//! computed in O(N), and vertical stripes, which the paper compares against;
//! the overhead of the overlap each costs; and [`run_tiled`], which runs a
//! local op tile by tile (each with a halo of at least the op's receptive
//! radius, cropped again when merging) so the result equals the untiled one.
//!
//! The near-square algorithm, for N tiles on a W x H image (landscape; the
//! axes are swapped otherwise): r = round(sqrt(N H / W)) rows (1 to N); row
//! i holds n_i = floor((i + 1) N / r) - floor(i N / r) tiles and is
//! floor(H n_i / N) rows tall, its tiles floor(W / n_i) wide; the integer
//! remainders go to the last row and the last tile of each row.

use crate::error::{Error, Result};
use crate::image_io::Image;
use crate::tensor::Samples;

/// One tile: its core rectangle (pixels it owns in the output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// Left column.
    pub x: usize,
    /// Top row.
    pub y: usize,
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
}

impl Tile {
    /// The tile grown by `halo` pixels on every side, clipped to a
    /// `width` x `height` image: (x, y, w, h).
    pub fn with_halo(&self, halo: usize, width: usize, height: usize) -> Tile {
        let (x0, y0) = (self.x.saturating_sub(halo), self.y.saturating_sub(halo));
        let (x1, y1) = ((self.x + self.w + halo).min(width), (self.y + self.h + halo).min(height));
        Tile { x: x0, y: y0, w: x1 - x0, h: y1 - y0 }
    }
}

/// How an op splits one image for several ranks
/// ([`crate::stream::StreamOp::split`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The tiles' cores, covering the image once.
    pub tiles: Vec<Tile>,
    /// Input pixels around each tile that its result depends on.
    pub halo: usize,
    /// Output pixels per input pixel along each axis.
    pub scale: usize,
}

/// How a command splits one image into tiles (`--tile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TileMode {
    /// Whole images while they fit the memory budget; beyond it, the fewest
    /// seed-001 tiles (2, 4, 8, ...) whose work fits.
    #[default]
    Auto,
    /// Never tile.
    Off,
    /// Tiles of at most this width and height ([`grid`]).
    Fixed(usize, usize),
}

impl std::str::FromStr for TileMode {
    type Err = Error;
    /// `auto`, `off`, or `WxH` (e.g. `1024x1024`).
    fn from_str(s: &str) -> Result<TileMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(TileMode::Auto),
            "off" | "none" => Ok(TileMode::Off),
            t => {
                let size =
                    t.split_once('x').and_then(|(w, h)| Some((w.parse::<usize>().ok()?, h.parse::<usize>().ok()?)));
                match size {
                    Some((w, h)) if w >= 16 && h >= 16 => Ok(TileMode::Fixed(w, h)),
                    _ => Err(Error::invalid(
                        "--tile",
                        format!("{s:?}: expected auto, off, or WxH with both sides at least 16"),
                    )),
                }
            }
        }
    }
}

/// The tiles `mode` gives a `width` x `height` image, or None to run it
/// whole. `peak(w, h)`: the op's memory for a w x h piece; `fixed`: what
/// the tiled run holds whatever the tiling (the whole output); `halo`: the
/// op's receptive radius. Auto tiles only when the whole image's peak is
/// over `budget`, with the fewest near-square tiles whose largest (with its
/// halo) fits beside `fixed`; None if even 4096 tiles do not (the caller's
/// memory check then refuses the image with the whole-image figure).
pub fn plan(
    mode: TileMode,
    width: usize,
    height: usize,
    halo: usize,
    budget: u64,
    fixed: u64,
    peak: impl Fn(usize, usize) -> u64,
) -> Result<Option<Vec<Tile>>> {
    match mode {
        TileMode::Off => Ok(None),
        TileMode::Fixed(tw, th) if tw >= width && th >= height => Ok(None),
        TileMode::Fixed(tw, th) => grid(width, height, tw, th).map(Some),
        TileMode::Auto if peak(width, height) <= budget => Ok(None),
        TileMode::Auto => {
            let mut n = 2;
            while n <= 4096 && n <= width * height {
                if let Ok(t) = tiles(Scheme::NearSquare, width, height, n) {
                    if fixed.saturating_add(largest(&t, halo, width, height, &peak)) <= budget {
                        return Ok(Some(t));
                    }
                }
                n *= 2;
            }
            Ok(None)
        }
    }
}

/// The largest `peak(w, h)` of `tiles` grown by `halo` (clipped to the
/// `width` x `height` image): the most one tile's work needs. 0 for none.
pub fn largest(tiles: &[Tile], halo: usize, width: usize, height: usize, peak: impl Fn(usize, usize) -> u64) -> u64 {
    tiles.iter().map(|t| t.with_halo(halo, width, height)).map(|g| peak(g.w, g.h)).max().unwrap_or(0)
}

/// The tiles for spreading one `width` x `height` image over `parts` ranks:
/// `own` (the tiles the op takes by itself, e.g. for its memory) when there
/// are at least `parts` of them, else `parts` near-square tiles (at most
/// the shorter side's count, so every tile has pixels).
pub fn for_ranks(own: Vec<Tile>, width: usize, height: usize, parts: usize) -> Result<Vec<Tile>> {
    if own.len() >= parts {
        return Ok(own);
    }
    tiles(Scheme::NearSquare, width, height, parts.clamp(1, width.min(height).max(1)))
}

/// How an image is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Seed 001's nearly square tiles.
    NearSquare,
    /// Vertical stripes of equal width (the paper's comparison).
    Stripes,
}

fn check(width: usize, height: usize, n: usize) -> Result<()> {
    if width == 0 || height == 0 || n == 0 || n > width.min(height).max(1) * width.max(height) {
        return Err(Error::invalid("tiling", format!("{n} tiles of a {width}x{height} image")));
    }
    Ok(())
}

/// `n` tiles covering a `width` x `height` image exactly once, by `scheme`.
/// An error when `n` is 0 or more tiles than pixels could hold (a tile is
/// at least one pixel on each side: stripes need n <= width, and the near-square
/// scheme needs rows <= height and tiles per row <= width).
pub fn tiles(scheme: Scheme, width: usize, height: usize, n: usize) -> Result<Vec<Tile>> {
    check(width, height, n)?;
    let t = match scheme {
        Scheme::Stripes => {
            if n > width {
                return Err(Error::invalid("tiling", format!("{n} stripes of a {width}-pixel-wide image")));
            }
            let sw = width / n;
            (0..n)
                .map(|i| Tile { x: i * sw, y: 0, w: if i + 1 == n { width - i * sw } else { sw }, h: height })
                .collect()
        }
        Scheme::NearSquare => {
            if width >= height {
                near_square(width, height, n)?
            } else {
                near_square(height, width, n)?.into_iter().map(|t| Tile { x: t.y, y: t.x, w: t.h, h: t.w }).collect()
            }
        }
    };
    Ok(t)
}

/// Tiles of at most `tw` x `th` covering a `width` x `height` image once:
/// as few columns and rows as that allows, their widths and heights spread
/// by integer division (the remainder to the last), as the paper sizes its
/// rows. For `--tile WxH`.
pub fn grid(width: usize, height: usize, tw: usize, th: usize) -> Result<Vec<Tile>> {
    if width == 0 || height == 0 || tw == 0 || th == 0 {
        return Err(Error::invalid("tiling", format!("{tw}x{th} tiles of a {width}x{height} image")));
    }
    let (nc, nr) = (width.div_ceil(tw), height.div_ceil(th));
    let edges = |n: usize, len: usize| -> Vec<usize> { (0..=n).map(|i| i * len / n).collect() };
    let (xs, ys) = (edges(nc, width), edges(nr, height));
    let mut out = Vec::with_capacity(nc * nr);
    for r in 0..nr {
        for c in 0..nc {
            out.push(Tile { x: xs[c], y: ys[r], w: xs[c + 1] - xs[c], h: ys[r + 1] - ys[r] });
        }
    }
    Ok(out)
}

/// The landscape case (`w >= h`).
fn near_square(w: usize, h: usize, n: usize) -> Result<Vec<Tile>> {
    let r = ((n as f64 * h as f64 / w as f64).sqrt().round() as usize).clamp(1, n);
    let mut out = Vec::with_capacity(n);
    let mut y = 0;
    for i in 0..r {
        let ni = (i + 1) * n / r - i * n / r;
        let rh = if i + 1 == r { h - y } else { h * ni / n };
        if rh == 0 || ni > w {
            return Err(Error::invalid("tiling", format!("{n} tiles of a {w}x{h} image: row {i} would be empty")));
        }
        let tw = w / ni;
        for j in 0..ni {
            out.push(Tile { x: j * tw, y, w: if j + 1 == ni { w - j * tw } else { tw }, h: rh });
        }
        y += rh;
    }
    Ok(out)
}

/// Pixels processed with a halo of `halo` around every tile, relative to
/// the image's: 0 for one tile, more the longer the tiles' boundaries.
pub fn overhead(tiles: &[Tile], halo: usize, width: usize, height: usize) -> f64 {
    let area: usize = tiles.iter().map(|t| t.with_halo(halo, width, height)).map(|t| t.w * t.h).sum();
    area as f64 / (width * height) as f64 - 1.0
}

/// The part `t` of `img` (interleaved samples).
pub fn crop(img: &Image, t: Tile) -> Result<Image> {
    fn rows<T: Copy>(s: &[T], t: Tile, w: usize, c: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(t.w * t.h * c);
        for y in t.y..t.y + t.h {
            out.extend_from_slice(&s[(y * w + t.x) * c..(y * w + t.x + t.w) * c]);
        }
        out
    }
    let (c, w) = (img.channels, img.width as usize);
    let samples = match &img.samples {
        Samples::U8(s) => Samples::U8(rows(s, t, w, c)),
        Samples::U16(s) => Samples::U16(rows(s, t, w, c)),
    };
    Image::new(t.w as u32, t.h as u32, c, samples)
}

/// Runs `op` on each tile of `img` grown by `halo` pixels (clipped to the
/// image), crops each result back to its tile's core and merges them into
/// an image `scale` times the input's size. With `halo` at least the op's
/// receptive radius (in input pixels) and an op that treats the image's
/// own edges alike in every tile (its padding falls outside the image in
/// both runs), the result is the untiled one, sample for sample.
pub fn run_tiled(
    img: &Image,
    tiles: &[Tile],
    halo: usize,
    scale: usize,
    op: impl Fn(&Image) -> Result<Image>,
) -> Result<Image> {
    let (w, h) = (img.width as usize, img.height as usize);
    let mut merge = Merge::new(img, scale)?;
    for t in tiles {
        let g = t.with_halo(halo, w, h);
        merge.paste(*t, g, &op(&crop(img, g)?)?)?;
    }
    Ok(merge.into_image())
}

/// The output of a tiled run being put together: each tile's result (the
/// op run on the tile grown by its halo) cropped to the tile's core and
/// pasted in place, in any order ([`run_tiled`] on one process; the MPI
/// master as its workers' tiles come back).
#[derive(Debug)]
pub struct Merge {
    out: Image,
    scale: usize,
    pasted: usize,
}

impl Merge {
    /// An empty output for `img` run at `scale` (same channels and depth).
    pub fn new(img: &Image, scale: usize) -> Result<Merge> {
        let (ow, oh, c) = (img.width as usize * scale, img.height as usize * scale, img.channels);
        let samples = match &img.samples {
            Samples::U8(_) => Samples::U8(crate::fsutil::try_vec("the tiled output", ow * oh * c, 0u8)?),
            Samples::U16(_) => Samples::U16(crate::fsutil::try_vec("the tiled output", ow * oh * c, 0u16)?),
        };
        Ok(Merge { out: Image::new(ow as u32, oh as u32, c, samples)?, scale, pasted: 0 })
    }

    /// Pastes the core `t` of `y`, the op's result on `g` (`t` grown by the
    /// halo, in input pixels); refuses a result of the wrong size or depth.
    pub fn paste(&mut self, t: Tile, g: Tile, y: &Image) -> Result<()> {
        let (scale, c, ow) = (self.scale, self.out.channels, self.out.width as usize);
        let inside = g.x <= t.x && g.y <= t.y && t.x + t.w <= g.x + g.w && t.y + t.h <= g.y + g.h;
        if !inside || (t.x + t.w) * scale > ow || (t.y + t.h) * scale > self.out.height as usize {
            return Err(Error::invalid("tiling", format!("tile {t:?} with halo {g:?} is not inside the image")));
        }
        if (y.width as usize, y.height as usize, y.channels) != (g.w * scale, g.h * scale, c) {
            return Err(Error::invalid(
                "tiling",
                format!(
                    "the op gave {}x{}x{} for a {}x{} tile at scale {scale}",
                    y.width, y.height, y.channels, g.w, g.h
                ),
            ));
        }
        // The core, in the op's output, and in the merged image.
        let (dx, dy) = ((t.x - g.x) * scale, (t.y - g.y) * scale);
        let (cw, ch, yw) = (t.w * scale, t.h * scale, g.w * scale);
        macro_rules! paste {
            ($dst:expr, $src:expr) => {
                for r in 0..ch {
                    let s = ((dy + r) * yw + dx) * c;
                    let d = ((t.y * scale + r) * ow + t.x * scale) * c;
                    $dst[d..d + cw * c].copy_from_slice(&$src[s..s + cw * c]);
                }
            };
        }
        match (&mut self.out.samples, &y.samples) {
            (Samples::U8(d), Samples::U8(s)) => paste!(d, s),
            (Samples::U16(d), Samples::U16(s)) => paste!(d, s),
            _ => return Err(Error::invalid("tiling", "the op changed the sample depth")),
        }
        self.pasted += 1;
        Ok(())
    }

    /// Tiles pasted so far.
    pub fn pasted(&self) -> usize {
        self.pasted
    }

    /// The merged image.
    pub fn into_image(self) -> Image {
        self.out
    }
}
