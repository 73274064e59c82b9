//! `deploy/` renders with `kubectl kustomize`, and every rendered object passes the Kubernetes API's schema
//! (`kubernetes-validate --strict` from `PyPI`, with the schemas it ships; no cluster runs here).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The API version the objects are checked against.
const KUBERNETES: &str = "1.33.0";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn render(dir: &Path) -> String {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl is needed to render deploy/ (scripts/test installs it)");
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 YAML")
}

/// `kubernetes-validate --strict` on the YAML: Ok, or what it said.
fn validate(yaml: &str) -> Result<(), String> {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().expect("tempfile");
    std::fs::write(file.path(), yaml).expect("write");
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", KUBERNETES])
        .arg(file.path())
        .output()
        .expect("kubernetes-validate is needed: scripts/test installs it in a venv under target/ and puts it on PATH");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// kustomize takes only relative paths to other kustomizations: `to` as seen from `from` (both absolute).
fn relative(from: &Path, to: &Path) -> String {
    let up = "../".repeat(from.components().count() - 1);
    format!("{up}{}", to.strip_prefix("/").expect("absolute").display())
}

#[test]
fn every_kustomization_in_deploy_renders_to_objects_the_kubernetes_schema_accepts() {
    // The public-ingress component, as an operator's overlay would add it to the base.
    let overlay = tempfile::tempdir().expect("tempdir");
    let base = root();
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {}\ncomponents:\n  - {}\n",
            relative(overlay.path(), &base.join("base")),
            relative(overlay.path(), &base.join("components/public-ingress"))
        ),
    )
    .expect("overlay");
    let dirs = [
        base.join("base"),
        base.join("overlays/external-postgres"),
        base.join("overlays/sqlite-single"),
        base.join("sandbox"),
        base.join("sandbox/pod"),
        overlay.path().to_owned(),
    ];
    for dir in &dirs {
        let yaml = render(dir);
        assert!(yaml.contains("kind: "), "{} rendered nothing", dir.display());
        if let Err(said) = validate(&yaml) {
            panic!("{} renders objects the schema refuses:\n{said}", dir.display());
        }
    }
    let with_ingress = render(overlay.path());
    assert!(with_ingress.contains("kind: Ingress") && with_ingress.contains("kind: Deployment"));

    // The check can fail: a misspelt field in the rendered Deployment is refused.
    let misspelt = render(&base.join("base")).replacen("replicas:", "replica:", 1);
    assert!(validate(&misspelt).is_err(), "a misspelt field passed the schema check");
}
