//! The results, offline: the [`report::Report`] of a run and its console table, the files of a
//! run directory (`output` writes, `rundir` reads back), `report.html` (`html`) and baseline
//! comparison (`compare`). Everything here works from a run directory alone.

pub mod compare;
pub mod html;
pub mod merge;
pub mod output;
pub mod report;
pub mod rundir;
pub mod shard_record;
