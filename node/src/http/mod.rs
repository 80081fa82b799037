//! The HTTP surface every node serves: the router and its token check, `POST /api/v1/jobs`,
//! the cluster and job views, jobs' logs, Prometheus metrics and the dashboard.

pub(crate) mod api;
pub(crate) mod error;
pub mod guard;
pub(crate) mod inplace;
pub mod jobs_view;
pub mod limits;
pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod nodes;
pub(crate) mod splitter;
pub mod submit;
pub mod token;
pub mod view;

pub use api::CHECKSUM_HEADER;
