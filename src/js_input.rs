//! JavaScript value -> the core's [`Value`] tree, without judging it: validation (and its
//! field-naming errors) happens in the core.

use napi::bindgen_prelude::JsObjectValue;
use napi::bindgen_prelude::{Array, Buffer, Object, Unknown};
use napi::{JsDate, JsValue, Result, ValueType};
use smtp_oauth_core::{ByteBuf, Value};

/// Deeper nesting than this is a cycle or a mistake, not a config or a message.
const MAX_DEPTH: usize = 32;

pub fn to_value(value: Unknown) -> Result<Value> {
    convert(value, 0)
}

fn convert(value: Unknown, depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Ok(Value::Other(
            "a value nested too deeply (a circular reference?)".into(),
        ));
    }
    Ok(match value.get_type()? {
        ValueType::Undefined => Value::Undefined,
        ValueType::Null => Value::Null,
        ValueType::Boolean => Value::Bool(unsafe { value.cast::<bool>()? }),
        ValueType::Number => Value::Number(unsafe { value.cast::<f64>()? }),
        ValueType::String => Value::String(unsafe { value.cast::<String>()? }),
        // A reference, not a copy: the bytes are read later, off the JS thread.
        ValueType::Object if value.is_buffer()? => {
            Value::Bytes(ByteBuf::new(unsafe { value.cast::<Buffer>()? }))
        }
        ValueType::Object if value.is_date()? => Value::Date(unsafe { value.cast::<JsDate>()? }.value_of()?),
        ValueType::Object if value.is_array()? => {
            let array = unsafe { value.cast::<Array>()? };
            let mut items = Vec::with_capacity(array.len() as usize);
            for index in 0..array.len() {
                let item: Unknown = array.get_element(index)?;
                items.push(convert(item, depth + 1)?);
            }
            Value::Array(items)
        }
        ValueType::Object if value.is_typedarray()? || value.is_arraybuffer()? => {
            Value::Other("a typed array other than Uint8Array/Buffer".into())
        }
        ValueType::Object => {
            let object = unsafe { value.cast::<Object>()? };
            if is_stream(&object)? {
                return Ok(Value::Other("a stream".into()));
            }
            let keys = Object::keys(&object)?;
            let mut pairs = Vec::with_capacity(keys.len());
            for key in keys {
                let child: Unknown = object.get_named_property(&key)?;
                let converted = convert(child, depth + 1)?;
                pairs.push((key, converted));
            }
            Value::Object(pairs)
        }
        ValueType::Function => Value::Other("function".into()),
        ValueType::Symbol => Value::Other("symbol".into()),
        ValueType::BigInt => Value::Other("bigint".into()),
        _ => Value::Other("unknown".into()),
    })
}

/// Streams have a `pipe` method; walking their internals would be slow and meaningless.
fn is_stream(object: &Object) -> Result<bool> {
    let pipe: Unknown = object.get_named_property("pipe")?;
    Ok(pipe.get_type()? == ValueType::Function)
}
