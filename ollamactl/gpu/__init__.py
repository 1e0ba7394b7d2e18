"""GPU inventory and compatibility: NVIDIA (NVML), AMD (sysfs/KFD), Apple."""
