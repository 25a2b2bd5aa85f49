//! Bitmap text: glyph lookup in the 8x8 public-domain font, measuring, wrapping and drawing.

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// Side of one glyph cell of the font, in font pixels.
pub(crate) const GLYPH: u32 = 8;

/// The 8 row bitmaps of `c` (bit 0 is the leftmost pixel).
///
/// Whitespace draws as a blank cell; control characters and characters the font has no (or an
/// empty) glyph for draw as `?`, so every `char` occupies exactly one cell.
pub(crate) fn glyph(c: char) -> [u8; 8] {
    if c.is_whitespace() {
        return [0; 8];
    }
    if !c.is_control() {
        let found = font8x8::BASIC_FONTS
            .get(c)
            .or_else(|| font8x8::LATIN_FONTS.get(c))
            .or_else(|| font8x8::GREEK_FONTS.get(c))
            .or_else(|| font8x8::BOX_FONTS.get(c))
            .or_else(|| font8x8::BLOCK_FONTS.get(c))
            .or_else(|| font8x8::HIRAGANA_FONTS.get(c));
        if let Some(g) = found.filter(|g| g.iter().any(|&row| row != 0)) {
            return g;
        }
    }
    font8x8::legacy::BASIC_LEGACY[usize::from(b'?')]
}

/// Width in pixels of `text` drawn at `scale`.
pub(crate) fn width(text: &str, scale: u32) -> u64 {
    text.chars().count() as u64 * u64::from(GLYPH * scale)
}

/// Draws `text` with its top-left corner at (`x`, `y`), each font pixel a `scale` x `scale`
/// square; pixels falling outside the image are skipped.
pub(crate) fn draw(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: u32, colour: Rgb<u8>) {
    let s = i64::from(scale);
    for (i, c) in text.chars().enumerate() {
        let gx = x + i as i64 * i64::from(GLYPH) * s;
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    fill_rect(img, gx + col * s, y + row as i64 * s, s, s, colour);
                }
            }
        }
    }
}

/// Fills the rectangle of size `w` x `h` at (`x`, `y`), clipped to the image.
pub(crate) fn fill_rect(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, colour: Rgb<u8>) {
    let x0 = x.clamp(0, i64::from(img.width()));
    let x1 = (x + w).clamp(0, i64::from(img.width()));
    let y0 = y.clamp(0, i64::from(img.height()));
    let y1 = (y + h).clamp(0, i64::from(img.height()));
    for yy in y0..y1 {
        for xx in x0..x1 {
            // The clamps above keep both coordinates inside the image.
            img.put_pixel(xx as u32, yy as u32, colour);
        }
    }
}

/// Cuts `text` down to at most `max_chars` characters, ending in `..` when something was cut.
pub(crate) fn truncate(text: &str, max_chars: usize) -> String {
    let n = text.chars().count();
    if n <= max_chars {
        return text.to_owned();
    }
    if max_chars < 3 {
        return text.chars().take(max_chars).collect();
    }
    let kept: String = text.chars().take(max_chars - 2).collect();
    format!("{}..", kept.trim_end())
}

/// Characters after which a word longer than a line may be broken.
fn is_break_after(c: char) -> bool {
    matches!(c, '_' | '-' | '/' | ',' | '.' | ':')
}

/// Greedy word wrap of `text` into lines of at most `max_chars` characters.
///
/// Runs of whitespace (newlines included) separate words; a word longer than a line is broken
/// after its last `_`, `-`, `/`, `,`, `.` or `:` that fits in the second half of the line, or
/// else at the line width. When more than `max_lines` lines would be needed, the last kept line
/// ends in `..`.
pub(crate) fn wrap(text: &str, max_chars: usize, max_lines: usize) -> Vec<String> {
    if max_chars == 0 || max_lines == 0 {
        return Vec::new();
    }
    let mut lines: Vec<Vec<char>> = Vec::new();
    let mut line: Vec<char> = Vec::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        let sep = usize::from(!line.is_empty());
        if line.len() + sep + word.len() <= max_chars {
            if sep == 1 {
                line.push(' ');
            }
            line.extend(word);
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        while word.len() > max_chars {
            let cut = (max_chars / 2 + 1..=max_chars)
                .rev()
                .find(|&p| is_break_after(word[p - 1]))
                .unwrap_or(max_chars);
            lines.push(word.drain(..cut).collect());
        }
        line = word;
    }
    if !line.is_empty() {
        lines.push(line);
    }
    let cut = lines.len() > max_lines;
    lines.truncate(max_lines);
    let mut out: Vec<String> = lines.into_iter().map(|l| l.into_iter().collect()).collect();
    if cut {
        if let Some(last) = out.last_mut() {
            let keep = if last.chars().count() + 2 <= max_chars {
                usize::MAX
            } else {
                max_chars.saturating_sub(2)
            };
            let kept: String = last.chars().take(keep).collect();
            *last = format!("{}..", kept.trim_end())
                .chars()
                .take(max_chars)
                .collect();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_glyphs_come_from_the_font_and_unknown_ones_are_question_marks() {
        assert_eq!(glyph('A'), font8x8::legacy::BASIC_LEGACY[usize::from(b'A')]);
        assert_eq!(glyph('%'), font8x8::legacy::BASIC_LEGACY[usize::from(b'%')]);
        assert_eq!(glyph('/'), font8x8::legacy::BASIC_LEGACY[usize::from(b'/')]);
        let question = font8x8::legacy::BASIC_LEGACY[usize::from(b'?')];
        assert_ne!(glyph('A'), question);
        assert_ne!(glyph('é'), question, "latin-1 letters are in the font");
        assert_eq!(glyph('猫'), question);
        assert_eq!(glyph('\u{7}'), question);
        assert_eq!(glyph('\u{1F600}'), question);
        assert_eq!(glyph(' '), [0; 8]);
        assert_eq!(glyph('\t'), [0; 8]);
    }

    #[test]
    fn wrap_breaks_at_spaces_and_keeps_words_whole() {
        assert_eq!(
            wrap("beagle 71% / pug 29%", 14, 2),
            vec!["beagle 71% /", "pug 29%"]
        );
        assert_eq!(wrap("  a\n b  ", 14, 2), vec!["a b"]);
        assert!(wrap("", 14, 2).is_empty());
        assert!(wrap("   ", 14, 2).is_empty());
    }

    #[test]
    fn wrap_breaks_long_words_after_underscores() {
        assert_eq!(
            wrap("american_pit_bull_terrier", 14, 3),
            vec!["american_pit_", "bull_terrier"]
        );
        assert_eq!(wrap("abcdefghij", 4, 3), vec!["abcd", "efgh", "ij"]);
    }

    #[test]
    fn wrap_marks_truncation() {
        assert_eq!(wrap("one two three four", 5, 2), vec!["one", "two.."]);
        assert_eq!(wrap("abc def", 2, 1), vec![".."]);
        assert_eq!(wrap("abcdefghij", 4, 2), vec!["abcd", "ef.."]);
    }

    #[test]
    fn truncate_marks_the_cut() {
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcd..");
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("with a rather long name", 16), "with a rather..");
    }
}
