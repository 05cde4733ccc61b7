//! JavaScript value -> the core's [`Value`] tree, without judging it: validation (and its
//! field-naming errors) happens in the core.

use napi::bindgen_prelude::JsObjectValue;
use napi::bindgen_prelude::{Array, ArrayBuffer, BufferSlice, Object, Unknown};
use napi::{Env, JsDate, JsValue, Result, ValueType};
use smtp_oauth_core::{ByteBuf, Value};

/// Deeper nesting than this is a mistake, not a config or a message.
const MAX_DEPTH: usize = 32;
/// More values than this is not a config or a message either; it also bounds the walk of an
/// object graph whose shared parts would otherwise be visited exponentially often.
const MAX_VALUES: usize = 100_000;

pub fn to_value(env: &Env, value: Unknown) -> Result<Value> {
    Walker {
        env,
        ancestors: Vec::new(),
        visited: 0,
    }
    .convert(value)
}

struct Walker<'a, 'env> {
    env: &'a Env,
    /// The objects and arrays being converted, outermost first: a value equal to one of
    /// them is a cycle.
    ancestors: Vec<Unknown<'env>>,
    visited: usize,
}

impl<'env> Walker<'_, 'env> {
    fn convert(&mut self, value: Unknown<'env>) -> Result<Value> {
        self.visited += 1;
        if self.visited > MAX_VALUES {
            return Ok(Value::Other(format!(
                "part of a value with more than {MAX_VALUES} fields"
            )));
        }
        Ok(match value.get_type()? {
            ValueType::Undefined => Value::Undefined,
            ValueType::Null => Value::Null,
            ValueType::Boolean => Value::Bool(unsafe { value.cast::<bool>()? }),
            ValueType::Number => Value::Number(unsafe { value.cast::<f64>()? }),
            ValueType::String => Value::String(unsafe { value.cast::<String>()? }),
            // Bytes are copied here, on the JS thread, during the synchronous call. Keeping
            // a reference (napi's `Buffer`) and reading it later off the JS thread is
            // unsound: napi-rs's own source calls that type's Send/Sync impls undefined
            // behaviour, JavaScript may change the bytes while they are sent, and an
            // ArrayBuffer transferred away (`structuredClone(x, { transfer })`,
            // `postMessage`) moves its memory to another owner who may free it under the
            // pointer. N-API has no way to make an ArrayBuffer non-detachable, so a copy is
            // the only sound choice; it costs one memcpy and the attachment's size once.
            // `napi_is_buffer` is true for every view (Buffer, Uint8Array, DataView, other
            // typed arrays, subarrays): the bytes of the view, not its whole ArrayBuffer.
            ValueType::Object if value.is_buffer()? => {
                Value::Bytes(ByteBuf::from(unsafe { value.cast::<BufferSlice>()? }.to_vec()))
            }
            ValueType::Object if value.is_arraybuffer()? => {
                Value::Bytes(ByteBuf::from(unsafe { value.cast::<ArrayBuffer>()? }.to_vec()))
            }
            ValueType::Object if value.is_date()? => {
                Value::Date(unsafe { value.cast::<JsDate>()? }.value_of()?)
            }
            ValueType::Object => {
                if self.is_ancestor(&value)? {
                    return Ok(Value::Other("a circular reference".into()));
                }
                if self.ancestors.len() >= MAX_DEPTH {
                    return Ok(Value::Other(format!(
                        "a value nested more than {MAX_DEPTH} levels deep"
                    )));
                }
                self.ancestors.push(value);
                let converted = self.convert_container(value);
                self.ancestors.pop();
                converted?
            }
            ValueType::Function => Value::Other("function".into()),
            ValueType::Symbol => Value::Other("symbol".into()),
            ValueType::BigInt => Value::Other("bigint".into()),
            _ => Value::Other("unknown".into()),
        })
    }

    fn convert_container(&mut self, value: Unknown<'env>) -> Result<Value> {
        if value.is_array()? {
            let array = unsafe { value.cast::<Array>()? };
            let mut items = Vec::with_capacity(array.len() as usize);
            for index in 0..array.len() {
                let item: Unknown = array.get_element(index)?;
                items.push(self.convert(item)?);
            }
            return Ok(Value::Array(items));
        }
        let object = unsafe { value.cast::<Object>()? };
        if is_stream(&object)? {
            return Ok(Value::Other("a stream".into()));
        }
        let keys = Object::keys(&object)?;
        let mut pairs = Vec::with_capacity(keys.len());
        for key in keys {
            let child: Unknown = object.get_named_property(&key)?;
            let converted = self.convert(child)?;
            pairs.push((key, converted));
        }
        Ok(Value::Object(pairs))
    }

    fn is_ancestor(&self, value: &Unknown<'env>) -> Result<bool> {
        for ancestor in &self.ancestors {
            if self.env.strict_equals(*ancestor, *value)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Streams have a `pipe` method; walking their internals would be slow and meaningless.
fn is_stream(object: &Object) -> Result<bool> {
    let pipe: Unknown = object.get_named_property("pipe")?;
    Ok(pipe.get_type()? == ValueType::Function)
}
