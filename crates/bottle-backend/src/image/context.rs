//! Docker build contexts as tar archives, made in memory (a Dockerfile and a binary are small).

/// A tar holding `Dockerfile` and each `(name, mode, data)`, with fixed owner and mtime so equal
/// inputs give equal bytes.
pub(super) fn tar(dockerfile: &str, files: &[(&str, u32, &[u8])]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    append(&mut builder, "Dockerfile", 0o644, dockerfile.as_bytes())?;
    for (name, mode, data) in files {
        append(&mut builder, name, *mode, data)?;
    }
    builder.into_inner()
}

fn append<W: std::io::Write>(builder: &mut tar::Builder<W>, name: &str, mode: u32, data: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder.append_data(&mut header, name, data)
}

/// The same context written to `file`, with whole directories added first: `(prefix, dir)` puts `dir`'s
/// tree under `prefix` (the context root when empty). Symlinks stay symlinks (npm's `.bin`).
pub(super) fn tar_to_file(
    file: &std::fs::File,
    dockerfile: &str,
    files: &[(&str, u32, &[u8])],
    dirs: &[(&str, std::path::PathBuf)],
) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    builder.follow_symlinks(false);
    for (prefix, dir) in dirs {
        let name = if prefix.is_empty() { "." } else { prefix };
        builder.append_dir_all(name, dir)?;
    }
    // Last, so a `Dockerfile` inside a context directory never replaces the one being built.
    for (name, mode, data) in files {
        append(&mut builder, name, *mode, data)?;
    }
    append(&mut builder, "Dockerfile", 0o644, dockerfile.as_bytes())?;
    let mut writer = builder.into_inner()?;
    std::io::Write::flush(&mut writer)
}
