//! datamesh-mount: the FUSE driver.
