//! Builds the page the binary serves, as one response that loads nothing
//! else: `web/visage.html` with d3 (`web/node_modules/d3/dist/d3.min.js`)
//! inlined in place of its `<script src>` tag, and the page's import map
//! replaced by one that maps each ES module of `web/js/` to its text, as a
//! `data:` URL. The result is `OUT_DIR/visage.html`, which
//! `src/publisher/server.rs` includes. `e2e/perf.mjs --page` assembles a
//! working copy the same way, and a browser test checks that the two agree.
//!
//! d3 comes from the npm registry through `web/package.json` and its lock
//! file; when `web/node_modules` is missing this runs `npm ci` in `web/`
//! itself, so `cargo run --release -- demo` works on a fresh clone.

use std::path::{Path, PathBuf};
use std::process::Command;

const PAGE: &str = "web/visage.html";
const D3: &str = "web/node_modules/d3/dist/d3.min.js";
const MODULES: &str = "web/js";
/// The page's d3 line, which loads it from `node_modules` as written.
const D3_TAG: &str = r#"<script src="node_modules/d3/dist/d3.min.js"></script>"#;
/// The page's import map as written: `icewatch/NAME.js` is `js/NAME.js`.
const IMPORT_MAP_TAG: &str =
    r#"<script type="importmap">{ "imports": { "icewatch/": "./js/" } }</script>"#;
/// What the modules import each other as.
const MODULE_PREFIX: &str = "icewatch/";

fn main() {
    for path in [
        PAGE,
        MODULES,
        "web/package.json",
        "web/package-lock.json",
        D3,
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    let root = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let d3 = root.join(D3);
    if !d3.exists() {
        npm_ci(&root.join("web"));
    }
    let d3 = read(&d3, "run `npm ci` in web/");
    let page = read(&root.join(PAGE), "");
    let modules = modules(&root.join(MODULES));
    let page = assemble(&page, &d3, &modules).unwrap_or_else(|e| fail(&format!("{PAGE}: {e}")));
    let target = out.join("visage.html");
    std::fs::write(&target, page)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", target.display())));
}

/// The page with d3 and `modules` (file name, text) inlined.
fn assemble(page: &str, d3: &str, modules: &[(String, String)]) -> Result<String, String> {
    for tag in [D3_TAG, IMPORT_MAP_TAG] {
        if page.matches(tag).count() != 1 {
            return Err(format!("the page must have this line once: {tag}"));
        }
    }
    // An inline <script> element must not end early.
    let d3 = format!("<script>{}</script>", d3.replace("</script", "<\\/script"));
    let imports: Vec<String> = modules
        .iter()
        .map(|(name, text)| {
            // sourceURL names the module in the browser's tools and profiles,
            // instead of its data: URL.
            let text = format!("{text}\n//# sourceURL={MODULE_PREFIX}{name}\n");
            format!(
                r#""{MODULE_PREFIX}{name}": "data:text/javascript;base64,{}""#,
                base64(text.as_bytes())
            )
        })
        .collect();
    let map = format!(
        "<script type=\"importmap\">{{ \"imports\": {{\n{}\n}} }}</script>",
        imports.join(",\n")
    );
    Ok(page
        .replacen(D3_TAG, &d3, 1)
        .replacen(IMPORT_MAP_TAG, &map, 1))
}

/// The `.js` files of `dir`, by name, with their text.
fn modules(dir: &Path) -> Vec<(String, String)> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| fail(&format!("cannot list {}: {e}", dir.display())));
    let mut modules: Vec<(String, String)> = entries
        .map(|entry| entry.unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display()))))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.ends_with(".js").then(|| {
                let text = read(&entry.path(), "");
                (name, text)
            })
        })
        .collect();
    modules.sort();
    if !modules.iter().any(|(name, _)| name == "main.js") {
        fail(&format!("{} has no main.js", dir.display()));
    }
    modules
}

/// Standard base64 with padding (RFC 4648 §4), as `data:` URLs take it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        // Three bytes (zeros for those missing) are four 6-bit digits.
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn read(path: &Path, hint: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        let hint = if hint.is_empty() {
            String::new()
        } else {
            format!("; {hint}")
        };
        fail(&format!("cannot read {} ({e}){hint}", path.display()))
    })
}

/// Installs the exact versions of `web/package-lock.json` into `web/node_modules`.
fn npm_ci(web: &Path) {
    println!(
        "cargo:warning=web/node_modules is missing: running `npm ci` in {} to fetch d3",
        web.display()
    );
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(web)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "`npm ci` in {} failed ({s}); run it by hand to see why",
            web.display()
        )),
        Err(e) => fail(&format!(
            "icewatch embeds d3 from npm, but `npm` could not be run ({e}). \
             Install Node.js and npm, then run `npm ci` in {} (or just build again)",
            web.display()
        )),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
