//! Grid pictures: layout, pixel placement, captions, errors and the PNG file.

mod common;

use common::{pixels_of, solid, text_pixel_set};
use mix_viz::grid::{
    grid_image, grid_png, GridLayout, Tile, CAPTION_GAP, FONT_SCALE, LINE_HEIGHT, MARGIN,
    MAX_CAPTION_LINES, MAX_TILE_SIDE, MIN_TILE_SIDE,
};
use mix_viz::Error;
use proptest::prelude::*;

fn tile(h: usize, w: usize, rgb: [u8; 3], caption: &str) -> Tile {
    Tile {
        image: solid(h, w, rgb),
        caption: caption.to_owned(),
    }
}

fn colour(i: usize) -> [u8; 3] {
    [(i * 25) as u8, 200 - (i * 20) as u8, (i * 7 + 3) as u8]
}

#[test]
fn png_decodes_back_with_the_documented_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.png");
    let tiles: Vec<Tile> = (0..9)
        .map(|i| tile(224, 224, colour(i), "beagle 71% / pug 29%"))
        .collect();
    grid_png(&path, &tiles, 3).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    // Two caption lines: "beagle 71% /" and "pug 29%" at 14 characters a line.
    let cell_h = MAX_TILE_SIDE + CAPTION_GAP + 2 * LINE_HEIGHT + MARGIN;
    assert_eq!(
        img.dimensions(),
        (MARGIN + 3 * (MAX_TILE_SIDE + MARGIN), MARGIN + 3 * cell_h)
    );
    assert_eq!(
        img,
        grid_image(&tiles, 3).unwrap(),
        "the file holds exactly the rendered picture"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec!["grid.png"], "no temporary file is left behind");
}

#[test]
fn each_tile_lands_in_its_cell() {
    let tiles: Vec<Tile> = (0..7).map(|i| tile(224, 224, colour(i), "")).collect();
    let img = grid_image(&tiles, 3).unwrap();
    let layout = GridLayout::new(&tiles, 3).unwrap();
    assert_eq!((layout.cols, layout.rows, layout.caption_lines), (3, 3, 0));
    for i in 0..7 {
        let (x0, y0) = (
            MARGIN + (i as u32 % 3) * (224 + MARGIN),
            MARGIN + (i as u32 / 3) * (224 + MARGIN),
        );
        assert_eq!(layout.tile_origin(i), (x0, y0));
        for (dx, dy) in [(0, 0), (223, 0), (0, 223), (223, 223), (100, 57)] {
            assert_eq!(
                img.get_pixel(x0 + dx, y0 + dy).0,
                colour(i),
                "tile {i} at +({dx}, {dy})"
            );
        }
        assert_eq!(
            img.get_pixel(x0 - 1, y0).0,
            [255; 3],
            "margin left of tile {i}"
        );
        assert_eq!(
            img.get_pixel(x0 + 224, y0 + 223).0,
            [255; 3],
            "margin right of tile {i}"
        );
    }
    // The two empty cells of the last row stay white.
    assert!(pixels_of(&img, colour(7)).is_empty());
    assert_eq!(
        img.get_pixel(
            MARGIN + 2 * (224 + MARGIN) + 100,
            MARGIN + 2 * (224 + MARGIN) + 100
        )
        .0,
        [255; 3]
    );
}

#[test]
fn a_quadrant_pattern_keeps_its_place_when_shrunk() {
    // 448x448: red top-left, green top-right, blue bottom-left, black bottom-right.
    let mut a = solid(448, 448, [0, 0, 0]);
    for y in 0..448 {
        for x in 0..448 {
            let rgb = match (y < 224, x < 224) {
                (true, true) => [255, 0, 0],
                (true, false) => [0, 255, 0],
                (false, true) => [0, 0, 255],
                (false, false) => [0, 0, 0],
            };
            for c in 0..3 {
                a[[c, y, x]] = rgb[c];
            }
        }
    }
    let tiles = vec![
        Tile {
            image: a,
            caption: String::new(),
        },
        tile(10, 10, [9, 9, 9], ""),
    ];
    let img = grid_image(&tiles, 2).unwrap();
    let (x0, y0) = GridLayout::new(&tiles, 2).unwrap().tile_origin(0);
    assert_eq!(GridLayout::new(&tiles, 2).unwrap().tile_side, MAX_TILE_SIDE);
    assert_eq!(img.get_pixel(x0 + 56, y0 + 56).0, [255, 0, 0]);
    assert_eq!(img.get_pixel(x0 + 168, y0 + 56).0, [0, 255, 0]);
    assert_eq!(img.get_pixel(x0 + 56, y0 + 168).0, [0, 0, 255]);
    assert_eq!(img.get_pixel(x0 + 168, y0 + 168).0, [0, 0, 0]);
    // The small tile is enlarged to fill its whole square.
    let (x1, y1) = GridLayout::new(&tiles, 2).unwrap().tile_origin(1);
    assert_eq!(img.get_pixel(x1, y1).0, [9, 9, 9]);
    assert_eq!(
        img.get_pixel(x1 + MAX_TILE_SIDE - 1, y1 + MAX_TILE_SIDE - 1)
            .0,
        [9, 9, 9]
    );
}

#[test]
fn a_wide_image_is_letterboxed_in_the_middle_of_its_square() {
    // 16 high, 32 wide: side clamps up to MIN_TILE_SIDE (96), so the image becomes 96x48 at +24.
    let tiles = vec![tile(16, 32, [200, 10, 10], "")];
    let layout = GridLayout::new(&tiles, 3).unwrap();
    assert_eq!((layout.cols, layout.tile_side), (1, MIN_TILE_SIDE));
    let img = grid_image(&tiles, 3).unwrap();
    let (x0, y0) = layout.tile_origin(0);
    let red = pixels_of(&img, [200, 10, 10]);
    assert_eq!(red.len(), 96 * 48);
    assert!(red
        .iter()
        .all(|&(x, y)| (x0..x0 + 96).contains(&x) && (y0 + 24..y0 + 72).contains(&y)));
}

#[test]
fn caption_pixels_are_black_exactly_where_the_font_says() {
    for caption in ["X", "%", "beagle 71% / pug 29%"] {
        let tiles = vec![tile(224, 224, [90, 160, 220], caption)];
        let img = grid_image(&tiles, 1).unwrap();
        let layout = GridLayout::new(&tiles, 1).unwrap();
        let (x0, _) = layout.tile_origin(0);
        let lines: &[&str] = if caption.len() > 14 {
            &["beagle 71% /", "pug 29%"]
        } else {
            &[caption]
        };
        assert_eq!(layout.caption_lines, lines.len());
        for (k, line) in lines.iter().enumerate() {
            let top = layout.caption_top(0, k);
            let w = line.chars().count() as u32 * 8 * FONT_SCALE;
            let left = x0 + (MAX_TILE_SIDE - w) / 2;
            let mut dark = 0;
            for y in top..top + 8 * FONT_SCALE {
                for x in x0..x0 + MAX_TILE_SIDE {
                    let set = x >= left && text_pixel_set(line, FONT_SCALE, x - left, y - top);
                    let want = if set { [0; 3] } else { [255; 3] };
                    assert_eq!(
                        img.get_pixel(x, y).0,
                        want,
                        "{caption:?} line {k} at ({x}, {y})"
                    );
                    dark += usize::from(set);
                }
            }
            assert!(dark > 0, "{line:?} draws something");
        }
        // Nothing but the caption is black: every black pixel is inside a caption line band.
        let bands: Vec<_> = (0..lines.len()).map(|k| layout.caption_top(0, k)).collect();
        assert!(pixels_of(&img, [0; 3])
            .iter()
            .all(|&(_, y)| bands.iter().any(|&t| (t..t + 8 * FONT_SCALE).contains(&y))));
    }
}

#[test]
fn unknown_characters_draw_as_question_marks() {
    let render = |c: &str| grid_image(&[tile(50, 50, [1, 2, 3], c)], 1).unwrap();
    assert_eq!(render("猫 x"), render("? x"));
    assert_eq!(render("\u{7}"), render("?"));
    assert_ne!(render("é"), render("?"), "latin-1 letters have glyphs");
    assert_ne!(render("a"), render("?"));
}

#[test]
fn long_captions_are_cut_to_the_line_limit() {
    let long = "american_pit_bull_terrier 71% / staffordshire_bull_terrier 29%";
    let tiles = vec![
        tile(224, 224, [0, 0, 0], long),
        tile(224, 224, [0, 0, 0], "pug"),
    ];
    let layout = GridLayout::new(&tiles, 2).unwrap();
    assert_eq!(layout.caption_lines, MAX_CAPTION_LINES);
    let img = grid_image(&tiles, 2).unwrap();
    assert_eq!(img.height(), layout.height);
    // The caption band under the last line stays inside the picture.
    assert!(layout.caption_top(0, MAX_CAPTION_LINES - 1) + 8 * FONT_SCALE <= layout.height);
}

#[test]
fn blank_captions_take_no_room() {
    let tiles = vec![tile(224, 224, [5, 5, 5], " \n\t ")];
    let layout = GridLayout::new(&tiles, 1).unwrap();
    assert_eq!(layout.caption_lines, 0);
    assert_eq!(
        (layout.width, layout.height),
        (224 + 2 * MARGIN, 224 + 2 * MARGIN)
    );
}

#[test]
fn bad_inputs_give_their_errors() {
    assert!(matches!(grid_image(&[], 3), Err(Error::NoTiles)));
    assert!(matches!(
        grid_image(&[tile(4, 4, [0; 3], "")], 0),
        Err(Error::ZeroColumns)
    ));
    let two_channels = Tile {
        image: ndarray::Array3::zeros((2, 4, 4)),
        caption: String::new(),
    };
    let err = grid_image(&[tile(4, 4, [0; 3], ""), two_channels], 2).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BadTile {
                index: 1,
                shape: [2, 4, 4]
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("tile 1: expected a CHW RGB image"),
        "{err}"
    );
    let empty = tile(0, 4, [0; 3], "");
    assert!(matches!(
        grid_image(&[empty], 1),
        Err(Error::BadTile { index: 0, .. })
    ));
    // 1x224 slivers get 224-pixel squares while holding little memory.
    let many = vec![tile(1, 224, [0; 3], ""); 6000];
    assert!(matches!(
        GridLayout::new(&many, 1),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn a_missing_folder_is_an_io_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/folder/grid.png");
    let err = grid_png(&path, &[tile(4, 4, [0; 3], "a")], 1).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot create a temporary file beside"),
        "{err}"
    );
    assert!(!path.exists());
}

#[test]
fn an_existing_file_is_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.png");
    std::fs::write(&path, b"old contents").unwrap();
    let tiles = [tile(30, 30, [1, 2, 3], "new")];
    grid_png(&path, &tiles, 1).unwrap();
    assert_eq!(
        image::open(&path).unwrap().to_rgb8(),
        grid_image(&tiles, 1).unwrap()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_captions_and_images_render_at_the_layout_size(tiles in common::tiles(), cols in 1usize..5) {
        let layout = GridLayout::new(&tiles, cols).unwrap();
        let img = grid_image(&tiles, cols).unwrap();
        prop_assert_eq!(img.dimensions(), (layout.width, layout.height));
        prop_assert!(layout.caption_lines <= MAX_CAPTION_LINES);
        // The centre pixel of each square comes from its image (every image fills the centre).
        for (i, t) in tiles.iter().enumerate() {
            let (x0, y0) = layout.tile_origin(i);
            let half = layout.tile_side / 2;
            let p = img.get_pixel(x0 + half, y0 + half).0;
            let found = t.image.lanes(ndarray::Axis(0)).into_iter().any(|l| [l[0], l[1], l[2]] == p);
            prop_assert!(found, "tile {} centre {:?} is not one of its pixels", i, p);
        }
    }

    #[test]
    fn any_caption_string_never_panics(caption in common::caption()) {
        let tiles = [Tile { image: solid(224, 224, [7, 7, 7]), caption }];
        let img = grid_image(&tiles, 1).unwrap();
        // Captions only ever draw black on white below the image.
        let layout = GridLayout::new(&tiles, 1).unwrap();
        for (x, y, p) in img.enumerate_pixels() {
            if y >= MARGIN + layout.tile_side {
                prop_assert!(p.0 == [0; 3] || p.0 == [255; 3], "({}, {}) is {:?}", x, y, p);
            }
        }
    }
}
