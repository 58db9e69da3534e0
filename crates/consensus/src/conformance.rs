//! openraft's storage conformance suite (`openraft::testing::log::Suite`)
//! against both log stores, each with the state machine it runs with.

use std::io;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use tempfile::TempDir;

use crate::log_store::LogStore;
use crate::mem_log::MemLog;
use crate::state_machine::StateMachine;
use crate::types::TypeConfig;
use crate::wal::WalOptions;

fn setup_error(e: impl std::error::Error + Send + Sync + 'static) -> StorageError<TypeConfig> {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, io::Error::other(e))
}

/// A fresh on-disk log and state machine per test, in a temporary
/// directory that lives as long as they do.
struct OnDisk {
    segment_size: u64,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for OnDisk {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(setup_error)?;
        let options = WalOptions {
            segment_size: self.segment_size,
            ..WalOptions::default()
        };
        let (log, _) = LogStore::open(&dir.path().join("log"), &dir.path().join("meta"), options)
            .map_err(setup_error)?;
        let (state_machine, _) =
            StateMachine::open(Some(dir.path().join("snapshots"))).map_err(setup_error)?;
        Ok((dir, log, state_machine))
    }
}

struct InMemory;

impl StoreBuilder<TypeConfig, MemLog, StateMachine> for InMemory {
    async fn build(&self) -> Result<((), MemLog, StateMachine), StorageError<TypeConfig>> {
        let (state_machine, _) = StateMachine::open(None).map_err(setup_error)?;
        Ok(((), MemLog::default(), state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_store_passes_the_suite() {
    Suite::test_all(OnDisk {
        segment_size: crate::wal::DEFAULT_SEGMENT_SIZE,
    })
    .await
    .unwrap();
}

/// Segments of a few records each, so purges delete whole files and
/// truncations cross segment boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_store_with_tiny_segments_passes_the_suite() {
    Suite::test_all(OnDisk { segment_size: 100 }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_log_passes_the_suite() {
    Suite::test_all(InMemory).await.unwrap();
}
