//! Per-shard state of modules, keyed by type (a module's roster cache, block lists, ...).

use std::any::{Any, TypeId};

use ahash::HashMap;

/// A type-keyed map of module state living on one shard.
#[derive(Default)]
pub struct Extensions {
    map: HashMap<TypeId, Box<dyn Any>>,
}

impl Extensions {
    /// The state of type `T`, if a module inserted one.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.map.get(&TypeId::of::<T>())?.downcast_ref()
    }

    /// Mutable state of type `T`, if a module inserted one.
    pub fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.map.get_mut(&TypeId::of::<T>())?.downcast_mut()
    }

    /// Mutable state of type `T`, created with `Default` on first use.
    pub fn get_or_default<T: Default + 'static>(&mut self) -> &mut T {
        self.map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut()
            // The entry for TypeId::of::<T>() only ever holds a T.
            .expect("extension keyed by its own type")
    }

    /// Replaces the state of type `T`.
    pub fn insert<T: 'static>(&mut self, value: T) {
        self.map.insert(TypeId::of::<T>(), Box::new(value));
    }
}
