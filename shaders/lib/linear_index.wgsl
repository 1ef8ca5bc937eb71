// Shared snippet `linear_index`, composed before the 1-D shaders that name it
// in their descriptor: the item index of a dispatch from gpu::linear_groups,
// which folds more than 32768 workgroups into a second dimension.

fn linear_index(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
    return gid.x + gid.y * nwg.x * wg;
}

