//! Embeds the bundled sample dataset (data/sample/images) so that an installed mix-train finds it
//! outside the repository: writes the list of files with `include_bytes!` paths to OUT_DIR.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let images = manifest.join("../../data/sample/images");
    println!("cargo:rerun-if-changed={}", images.display());
    let mut names: Vec<String> = std::fs::read_dir(&images)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", images.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    names.sort();
    let mut code = String::from(
        "/// The sample's files: name and bytes.\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for name in &names {
        let path = images.join(name).canonicalize().expect("listed just now");
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("sample_files.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
