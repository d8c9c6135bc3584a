//! HF checkpoint directories: `config.json` plus `model.safetensors` or shards listed in
//! `model.safetensors.index.json`, read on import and written on export.

use super::table::{self, Transform};
use super::{spec, verify, Arch, AttnBias, HfConfig, HfError, Result};
use crate::{tensor_file, Tensor};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use weft_dsl::typed::{AbsPosition, NormKind};
use weft_dsl::Checked;

/// An imported checkpoint: its config, the weft spec text and the weights under weft names.
#[derive(Clone, Debug)]
pub struct Imported {
    pub config: HfConfig,
    pub spec: String,
    pub weights: BTreeMap<String, Tensor>,
}

/// Reads `dir` (config.json and the safetensors weights) into a weft spec named `name` and
/// its weights, checked against the parameters the spec lowers to.
pub fn import_dir(dir: &Path, name: &str) -> Result<Imported> {
    let config = HfConfig::read(&dir.join("config.json"))?;
    let spec_src = spec::spec_text(&config, name, &dir.display().to_string());
    let checked = weft_dsl::check_source(&spec_src).map_err(|d| {
        HfError::new(format!(
            "{}: the generated spec does not check: {}",
            dir.display(),
            d.first().map(|d| d.message.clone()).unwrap_or_default()
        ))
    })?;
    let shapes = verify::param_shapes(&checked)?;
    let (hf, origin) = load_tensors(dir, config.arch)?;
    let mut weights = BTreeMap::new();
    let mut used = BTreeSet::new();
    let mut source_of: BTreeMap<String, String> = BTreeMap::new();
    for (hf_name, weft, tr) in table::expand(config.arch, config.layers) {
        if !shapes.contains_key(&weft) {
            continue; // e.g. `lm_head.weight` of a tied model
        }
        let t = hf.get(&hf_name).ok_or_else(|| {
            HfError::new(format!(
                "{}: missing tensor `{hf_name}` (for weft `{weft}`, shape {:?})",
                dir.display(),
                shapes[&weft]
            ))
        })?;
        let mapped = table::forward(&hf_name, t, tr)?;
        source_of.insert(
            weft.clone(),
            format!(
                " (from `{hf_name}` {:?} in {}{})",
                t.shape,
                origin[&hf_name],
                if tr == Transform::Transpose {
                    ", transposed"
                } else {
                    ""
                }
            ),
        );
        used.insert(hf_name);
        weights.insert(weft, mapped);
    }
    verify::check_weights(&shapes, &weights, &|n| {
        source_of.get(n).cloned().unwrap_or_default()
    })
    .map_err(|e| HfError::new(format!("{}: {e}", dir.display())))?;
    let unused: Vec<&String> = hf
        .keys()
        .filter(|k| !used.contains(*k) && !table::is_buffer(k))
        .filter(|k| !(config.tie_embeddings && k.as_str() == "lm_head.weight"))
        .collect();
    if !unused.is_empty() {
        return Err(HfError::new(format!(
            "{}: tensors not in the {:?} mapping table: {}",
            dir.display(),
            config.arch,
            unused
                .iter()
                .take(8)
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(Imported {
        config,
        spec: spec_src,
        weights,
    })
}

/// Every tensor of the checkpoint under its canonical HF name, and the file it came from.
fn load_tensors(
    dir: &Path,
    arch: Arch,
) -> Result<(BTreeMap<String, Tensor>, BTreeMap<String, String>)> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index.exists() {
        shards(&index)?.into_iter().map(|f| dir.join(f)).collect()
    } else if single.exists() {
        vec![single]
    } else {
        return Err(HfError::new(format!(
            "{}: no model.safetensors or model.safetensors.index.json (PyTorch .bin files are not read)",
            dir.display()
        )));
    };
    let mut out = BTreeMap::new();
    let mut origin = BTreeMap::new();
    for f in files {
        let file_name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        for (name, t) in tensor_file::load(&f).map_err(|e| HfError::new(e.to_string()))? {
            let name = table::canonical_name(arch, &name);
            origin.insert(name.clone(), file_name.clone());
            out.insert(name, t);
        }
    }
    Ok((out, origin))
}

/// The distinct shard files of an index, in order of first mention.
fn shards(index: &Path) -> Result<Vec<String>> {
    let p = index.display();
    let text = std::fs::read_to_string(index)
        .map_err(|e| HfError::new(format!("cannot read {p}: {e}")))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| HfError::new(format!("{p}: not valid JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| HfError::new(format!("{p}: no `weight_map` object")))?;
    let mut files: Vec<String> = Vec::new();
    for (name, f) in map {
        let f = f
            .as_str()
            .ok_or_else(|| HfError::new(format!("{p}: `weight_map.{name}` is not a file name")))?;
        if !files.iter().any(|g| g == f) {
            files.push(f.to_string());
        }
    }
    Ok(files)
}

/// The HF layout a spec exports to, judged by its parameters and settings.
pub fn arch_of(spec: &Checked, weights: &BTreeMap<String, Tensor>) -> Result<Arch> {
    let cfg = &spec.model.config;
    let learned = match cfg.position {
        AbsPosition::Learned => true,
        AbsPosition::None => false,
    };
    let layer_norm = match cfg.final_norm {
        NormKind::LayerNorm => true,
        NormKind::RmsNorm => false,
    };
    if weights.contains_key("layers.0.mlp.w1") {
        if !learned || !layer_norm || !cfg.tie_embeddings {
            return Err(HfError::new(
                "a GPT-2 export needs `position = learned`, `final_norm = layer_norm` and `tie_embeddings = true`",
            ));
        }
        Ok(Arch::Gpt2)
    } else if weights.contains_key("layers.0.mlp.w_gate") {
        if learned || layer_norm {
            return Err(HfError::new(
                "a Llama export needs rotary positions and `final_norm = rms_norm`",
            ));
        }
        Ok(Arch::Llama)
    } else {
        Err(HfError::new(
            "the model is neither GPT-2-like (`mlp`) nor Llama-like (`swiglu`) in layer 0",
        ))
    }
}

/// Writes `weights` of `spec` as a HF checkpoint directory (config.json, model.safetensors)
/// in the GPT-2 or Llama layout; returns the layout.
pub fn export_dir(spec: &Checked, weights: &BTreeMap<String, Tensor>, out: &Path) -> Result<Arch> {
    let shapes = verify::param_shapes(spec)?;
    verify::check_weights(&shapes, weights, &|_| String::new())?;
    let arch = arch_of(spec, weights)?;
    let hidden_key = match arch {
        Arch::Gpt2 => "layers.0.mlp.w1",
        Arch::Llama => "layers.0.mlp.w_gate",
    };
    let hidden = weights[hidden_key].shape[1];
    let attn_bias = match (
        weights.contains_key("layers.0.attn.bq"),
        weights.contains_key("layers.0.attn.bo"),
    ) {
        (true, true) => AttnBias::All,
        (true, false) => AttnBias::Qkv,
        _ => AttnBias::None,
    };
    let config = spec::config_of(spec, arch, hidden, attn_bias)?;
    let hf = table::to_hf(arch, config.layers, weights)?;
    std::fs::create_dir_all(out)
        .map_err(|e| HfError::new(format!("cannot create {}: {e}", out.display())))?;
    let cfg = serde_json::to_string_pretty(&super::config::to_json(&config))
        .map_err(|e| HfError::new(e.to_string()))?;
    tensor_file::write_atomic(&out.join("config.json"), cfg.as_bytes())
        .map_err(|e| HfError::new(format!("{}: {e}", out.join("config.json").display())))?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    tensor_file::save_with_metadata(&out.join("model.safetensors"), &hf, Some(meta))
        .map_err(|e| HfError::new(e.to_string()))?;
    Ok(arch)
}
