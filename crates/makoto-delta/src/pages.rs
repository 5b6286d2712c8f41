//! Storage of state-tree pages under the warehouse (`system/makoto/state/<aa>/<id>.page`).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use makoto_core::Sha256Digest;
use makoto_core::reader_view::{FactsDigests, TableFacts};
use makoto_core::state::{Leaf, PageRequest, StateTree};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::Error;

const CONCURRENCY: usize = 16;

/// Content-addressed page storage.
#[derive(Debug, Clone)]
pub struct PageStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    display: String,
}

impl PageStore {
    /// `store` is rooted at the warehouse; pages go under `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, display: String) -> Self {
        PageStore {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            display,
        }
    }

    /// Where `path` (under the warehouse) is, for messages: `display` already ends in the
    /// prefix that `path` starts with.
    fn location(&self, path: &Path) -> String {
        let path = path.as_ref();
        let under = path
            .strip_prefix(self.prefix.as_str())
            .map_or(path, |rest| rest.trim_start_matches('/'));
        format!("{}/{under}", self.display)
    }

    fn path(&self, id: &Sha256Digest) -> Path {
        let hex = id.to_hex();
        Path::from(format!("{}/{}/{}.page", self.prefix, &hex[..2], hex))
    }

    pub async fn get(&self, id: &Sha256Digest) -> Result<bytes::Bytes, Error> {
        let path = self.path(id);
        match self.store.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| Error::storage(self.location(&path), e)),
            Err(object_store::Error::NotFound { .. }) => Err(Error::StatePageMissing {
                store: self.display.clone(),
                page: *id,
            }),
            Err(e) => Err(Error::storage(self.location(&path), e)),
        }
    }

    /// Whether the page `id` is stored (a `HEAD`, not a read).
    pub async fn contains(&self, id: &Sha256Digest) -> Result<bool, Error> {
        let path = self.path(id);
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::storage(self.location(&path), e)),
        }
    }

    fn facts_path(&self, digests: &FactsDigests) -> Path {
        Path::from(format!(
            "{}/facts/{}.json",
            self.prefix,
            facts_name(digests).to_hex()
        ))
    }

    /// Stores the table facts of a reader view (protocol, metadata, domain metadata, set
    /// transactions), named by [`facts_name`], so that a later run resumes from them.
    pub async fn put_facts(&self, facts: &TableFacts) -> Result<(), Error> {
        let path = self.facts_path(&facts.digests());
        let bytes = makoto_core::canonical::to_vec(&facts.to_json());
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(Error::storage(self.location(&path), e)),
        }
    }

    /// The stored table facts with these digests; `None` when absent or not matching them.
    pub async fn get_facts(&self, digests: &FactsDigests) -> Result<Option<TableFacts>, Error> {
        let path = self.facts_path(digests);
        let bytes = match self.store.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| Error::storage(self.location(&path), e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Error::storage(self.location(&path), e)),
        };
        let facts = serde_json::from_slice(&bytes)
            .ok()
            .and_then(|v| TableFacts::from_json(&v).ok());
        Ok(facts.filter(|f| f.digests() == *digests))
    }

    /// Stores the pages `pages` yields (pages are immutable: one already stored is kept),
    /// taking the next only when one of the [`CONCURRENCY`] puts in flight is done (a lazy
    /// iterator, such as
    /// [`StateTree::unstored_pages`](makoto_core::state::StateTree::unstored_pages), then holds
    /// no more than those pages' bytes at once). Returns the ids stored.
    pub async fn put_each(
        &self,
        pages: impl IntoIterator<Item = (Sha256Digest, Vec<u8>)>,
    ) -> Result<Vec<Sha256Digest>, Error> {
        futures::stream::iter(pages)
            .map(|(id, bytes)| async move {
                let path = self.path(&id);
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                match self
                    .store
                    .put_opts(&path, PutPayload::from(bytes), opts)
                    .await
                {
                    Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(id),
                    Err(e) => Err(Error::storage(self.location(&path), e)),
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<Sha256Digest>>()
            .await
    }

    /// Loads every page needed to look up, insert or remove `keys`, level by level, fetching
    /// each level's pages concurrently.
    pub async fn load_paths<L: Leaf>(
        &self,
        tree: &mut StateTree<L>,
        keys: &[Sha256Digest],
    ) -> Result<usize, Error> {
        let mut loaded = 0;
        loop {
            let mut wanted: BTreeMap<Sha256Digest, PageRequest> = BTreeMap::new();
            for k in keys {
                if let Some(req) = tree.missing_page(k) {
                    wanted.entry(req.page()).or_insert(req);
                }
            }
            if wanted.is_empty() {
                return Ok(loaded);
            }
            loaded += self.attach(tree, wanted.into_values().collect()).await?;
        }
    }

    /// Loads every page `tree` lacks, so that all of it is in memory, a level at a time.
    pub async fn load_all<L: Leaf>(&self, tree: &mut StateTree<L>) -> Result<usize, Error> {
        let mut loaded = 0;
        loop {
            let wanted = tree.missing_pages();
            if wanted.is_empty() {
                return Ok(loaded);
            }
            loaded += self.attach(tree, wanted).await?;
        }
    }

    /// Fetches the pages `wanted` concurrently and attaches them to `tree`.
    async fn attach<L: Leaf>(
        &self,
        tree: &mut StateTree<L>,
        wanted: Vec<PageRequest>,
    ) -> Result<usize, Error> {
        let fetched: Vec<(PageRequest, bytes::Bytes)> = futures::stream::iter(wanted)
            .map(|req| async move {
                let bytes = self.get(&req.page()).await?;
                Ok::<_, Error>((req, bytes))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let n = fetched.len();
        for (req, bytes) in fetched {
            tree.attach_page(&req, &bytes)
                .map_err(|e| Error::core(format!("{} page {}", self.display, req.page()), e))?;
        }
        Ok(n)
    }
}

/// The storage name of a facts object: SHA-256 of the canonical JSON of its four component
/// digests (hex), derivable from any statement that carries a reader view.
pub fn facts_name(d: &FactsDigests) -> Sha256Digest {
    Sha256Digest::of(&makoto_core::canonical::to_vec(&serde_json::json!({
        "protocol": d.protocol.to_hex(),
        "metadata": d.metadata.to_hex(),
        "domainMetadata": d.domain_metadata.to_hex(),
        "setTransactions": d.set_transactions.to_hex(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_a_page_by_its_place_in_the_warehouse() {
        let pages = PageStore::new(
            Arc::new(object_store::memory::InMemory::new()),
            "system/makoto/state",
            "file:///wh/system/makoto/state".to_owned(),
        );
        let id = Sha256Digest::of(b"page");
        let hex = id.to_hex();
        assert_eq!(
            pages.location(&pages.path(&id)),
            format!("file:///wh/system/makoto/state/{}/{hex}.page", &hex[..2])
        );
    }
}
