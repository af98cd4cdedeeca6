//! The poll(2) reactor (being written).
