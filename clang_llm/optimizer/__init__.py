"""The optimizer: proposes pass lists for one TU and picks the best validated one."""
