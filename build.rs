//! Embeds d3 into the binary: copies `web/node_modules/d3/dist/d3.min.js` to
//! `OUT_DIR/d3.min.js`, where `src/publisher/server.rs` includes it into the
//! page. d3 comes from the npm registry through `web/package.json` and its
//! lock file; when `web/node_modules` is missing this runs `npm ci` in `web/`
//! itself, so `cargo run --release -- demo` works on a fresh clone.

use std::path::{Path, PathBuf};
use std::process::Command;

const D3: &str = "web/node_modules/d3/dist/d3.min.js";

fn main() {
    for path in [
        "web/visage.html",
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
    let source = std::fs::read_to_string(&d3).unwrap_or_else(|e| {
        fail(&format!(
            "cannot read {} ({e}); run `npm ci` in {}",
            d3.display(),
            root.join("web").display()
        ))
    });
    // The page inlines d3 in a <script> element, which must not end early.
    let source = source.replace("</script", "<\\/script");
    std::fs::write(out.join("d3.min.js"), source)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", out.display())));
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
