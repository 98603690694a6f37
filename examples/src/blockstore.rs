//! A distributed file store in the spirit of CFS/DHash, on Chordal's
//! replicated key-value store.
//!
//! A file is cut into blocks; each block is stored under the SHA-1 of its
//! content (key `cfs/<40 hex>`), so a block is **self-certifying**: whoever
//! fetches it checks that its content hashes to its name, and a block that
//! does not is rejected, whichever node served it. A manifest lists the
//! file's size and its blocks' hashes; it is itself a content-named block,
//! and its hash is the file's **root**: the one name needed to fetch the
//! file and to know it is exactly the file that was stored. Replication
//! (`R` copies on successive nodes) is the store's, so a file survives
//! node failures as its keys do.
//!
//! Identical blocks are stored once. A manifest lists at most 20,000
//! blocks (it must fit one value of 1 MiB): 160 MB with 8 KiB blocks.

use chordal_node::Id;
use chordal_node::KeyValue;
use futures_util::{StreamExt, TryStreamExt};
use std::future::Future;

/// CFS's block size.
pub const DEFAULT_BLOCK_SIZE: usize = 8 * 1024;
/// Blocks in flight at once while storing or fetching.
const PARALLEL: usize = 16;
/// Most blocks one manifest lists.
const MAX_BLOCKS: usize = 20_000;
const MAGIC: &str = "chordal-blockstore v1";

/// Why storing or fetching a file failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("storage: {0}")]
    Store(String),
    #[error("block {0} not found")]
    Missing(String),
    #[error("block {0} does not match its hash: rejected")]
    Forged(String),
    #[error("not a manifest: {0}")]
    BadManifest(String),
    #[error("not a root: {0:?} (40 hex digits expected)")]
    BadRoot(String),
    #[error("file too large: {blocks} blocks, the limit is {MAX_BLOCKS}")]
    TooLarge { blocks: usize },
}

/// The store a blockstore uses: a ring member ([`chordal_node::Node`]) or
/// an outside client ([`chordal_node::Client`]).
pub trait BlockKv: Sync {
    fn put_value(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// `Ok(None)` if the key does not exist.
    fn get_value(
        &self,
        key: Vec<u8>,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, String>> + Send;
}

impl BlockKv for chordal_node::Node {
    async fn put_value(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        self.put(key, value)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    async fn get_value(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        let found = self.get(key).await.map_err(|e| e.to_string())?;
        Ok(found.map(|v| v.value))
    }
}

impl BlockKv for chordal_node::Client {
    async fn put_value(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        self.put(key, value)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    async fn get_value(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        let found = self.get(key).await.map_err(|e| e.to_string())?;
        Ok(found.map(|v| v.value))
    }
}

/// The store key of the block whose content hashes to `hash`.
pub fn block_key(hash: &Id) -> Vec<u8> {
    format!("cfs/{}", hash.to_hex()).into_bytes()
}

/// Stores `data` in blocks of `block_size` bytes; returns the root.
pub async fn put_file(kv: &impl BlockKv, data: &[u8], block_size: usize) -> Result<Id, BlockError> {
    let blocks: Vec<&[u8]> = data.chunks(block_size.max(1)).collect();
    if blocks.len() > MAX_BLOCKS {
        return Err(BlockError::TooLarge {
            blocks: blocks.len(),
        });
    }
    let hashes: Vec<Id> = blocks.iter().map(|b| Id::hash(b)).collect();
    futures_util::stream::iter(blocks.iter().zip(&hashes))
        .map(|(block, hash)| put_block(kv, hash, block.to_vec()))
        .buffer_unordered(PARALLEL)
        .try_collect::<()>()
        .await?;
    let manifest = manifest_text(data.len(), &hashes);
    let root = Id::hash(manifest.as_bytes());
    put_block(kv, &root, manifest.into_bytes()).await?;
    Ok(root)
}

/// Fetches the file named by `root`, checking every block against its
/// hash.
pub async fn get_file(kv: &impl BlockKv, root: &Id) -> Result<Vec<u8>, BlockError> {
    let manifest = get_block(kv, root).await?;
    let (size, hashes) = parse_manifest(&manifest)?;
    let blocks: Vec<Vec<u8>> = futures_util::stream::iter(&hashes)
        .map(|hash| get_block(kv, hash))
        .buffered(PARALLEL)
        .try_collect()
        .await?;
    let data = blocks.concat();
    if data.len() != size {
        return Err(BlockError::BadManifest(format!(
            "blocks add up to {} bytes, the manifest says {size}",
            data.len()
        )));
    }
    Ok(data)
}

/// Parses a root given as text.
pub fn parse_root(text: &str) -> Result<Id, BlockError> {
    text.trim()
        .parse()
        .map_err(|_| BlockError::BadRoot(text.to_string()))
}

async fn put_block(kv: &impl BlockKv, hash: &Id, block: Vec<u8>) -> Result<(), BlockError> {
    kv.put_value(block_key(hash), block)
        .await
        .map_err(BlockError::Store)
}

/// Fetches a block and checks that it is what its name says.
async fn get_block(kv: &impl BlockKv, hash: &Id) -> Result<Vec<u8>, BlockError> {
    let block = kv
        .get_value(block_key(hash))
        .await
        .map_err(BlockError::Store)?
        .ok_or_else(|| BlockError::Missing(hash.to_hex()))?;
    if Id::hash(&block) != *hash {
        return Err(BlockError::Forged(hash.to_hex()));
    }
    Ok(block)
}

fn manifest_text(size: usize, hashes: &[Id]) -> String {
    let mut out = format!("{MAGIC}\nsize {size}\n");
    for h in hashes {
        out.push_str("block ");
        out.push_str(&h.to_hex());
        out.push('\n');
    }
    out
}

fn parse_manifest(bytes: &[u8]) -> Result<(usize, Vec<Id>), BlockError> {
    let bad = |why: &str| BlockError::BadManifest(why.to_string());
    let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(bad("no blockstore header"));
    }
    let size = lines
        .next()
        .and_then(|l| l.strip_prefix("size "))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| bad("no size line"))?;
    let hashes = lines
        .map(|l| {
            l.strip_prefix("block ")
                .and_then(|h| h.parse().ok())
                .ok_or_else(|| bad("bad block line"))
        })
        .collect::<Result<Vec<Id>, _>>()?;
    if hashes.len() > MAX_BLOCKS {
        return Err(bad("too many blocks"));
    }
    Ok((size, hashes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_garbage_is_refused() {
        let hashes = vec![Id::hash(b"a"), Id::hash(b"b")];
        let text = manifest_text(12, &hashes);
        assert_eq!(parse_manifest(text.as_bytes()).unwrap(), (12, hashes));
        assert!(parse_manifest(b"hello").is_err());
        assert!(parse_manifest(format!("{MAGIC}\nsize x\n").as_bytes()).is_err());
        assert!(parse_manifest(format!("{MAGIC}\nsize 1\nblock zz\n").as_bytes()).is_err());
    }
}
