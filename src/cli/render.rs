//! `meshery-operator render -f`: the objects the operator would create for the CRs in the files.

use std::path::PathBuf;

use clap::Args;

use super::input::read_documents;
use super::plan::render_documents;
use crate::diff::mask;

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Files or directories (searched for .yaml, .yml, .json) holding Broker and MeshSync CRs.
    #[arg(short = 'f', long = "filename", required = true)]
    pub filenames: Vec<PathBuf>,
}

/// The desired objects as a multi-document YAML stream, Secret values masked.
pub fn render(args: &RenderArgs) -> Result<String, String> {
    let documents = read_documents(&args.filenames).map_err(|e| e.to_string())?;
    let rendered = render_documents(&documents, &[]).map_err(|e| e.to_string())?;
    let mut out = String::new();
    for (owner, objects) in rendered {
        for object in objects {
            let yaml = serde_norway::to_string(&mask::mask_object(&object.0))
                .map_err(|e| format!("{} {}/{}: {e}", owner.kind, owner.namespace, owner.name))?;
            out.push_str("---\n");
            out.push_str(&yaml);
        }
    }
    Ok(out)
}
