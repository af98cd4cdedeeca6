//! The IPC wire protocol (being written).
