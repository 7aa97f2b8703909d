//! Arrow data across the Python boundary through the Arrow PyCapsule interface
//! (<https://arrow.apache.org/docs/format/CDataInterface/PyCapsuleInterface.html>): record batches
//! and streams in (`__arrow_c_array__`, `__arrow_c_stream__`), record batches and arrays out as
//! pyarrow objects.
//!
//! The few conversions the binding needs, written on arrow-rs's C data interface rather than
//! taken from `pyo3-arrow`, which brings `arrow-cast` (and its every-type-to-every-type kernel),
//! `chrono-tz` and pretty-printing into the extension's build.

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use arrow_array::{
    Array, ArrayRef, RecordBatch, RecordBatchIterator, RecordBatchOptions, RecordBatchReader, StructArray, make_array,
};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Schema, SchemaRef};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};
use pyo3::{Borrowed, intern};
use std::ffi::CStr;
use std::sync::Arc;

const SCHEMA: &CStr = c"arrow_schema";
const ARRAY: &CStr = c"arrow_array";
const STREAM: &CStr = c"arrow_array_stream";

fn arrow_error(e: ArrowError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Calls `obj.__arrow_c_array__()`: the (schema, array) capsules of one array or record batch.
fn array_capsules<'py>(obj: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
    let tuple = obj.call_method0(intern!(obj.py(), "__arrow_c_array__"))?;
    let tuple =
        tuple.cast_into::<PyTuple>().map_err(|_| PyTypeError::new_err("__arrow_c_array__ must return a tuple"))?;
    Ok((tuple.get_item(0)?.cast_into()?, tuple.get_item(1)?.cast_into()?))
}

/// Imports an array and its field from the capsules of `__arrow_c_array__`.
fn import_array(schema: &Bound<'_, PyCapsule>, array: &Bound<'_, PyCapsule>) -> PyResult<(ArrayRef, Field)> {
    let schema_ptr = schema.pointer_checked(Some(SCHEMA))?.cast::<FFI_ArrowSchema>();
    let array_ptr = array.pointer_checked(Some(ARRAY))?.cast::<FFI_ArrowArray>();
    // SAFETY: the capsules are named as the PyCapsule interface names an `ArrowSchema` and an
    // `ArrowArray` (checked above), so their pointers are to live structs of those types, owned by
    // the capsules. The schema is only borrowed for the duration of this call, while `schema` keeps
    // its capsule alive; the array is moved out (`from_raw` leaves a released struct behind, which
    // the capsule's destructor then skips), as the interface prescribes for a consumer.
    let (schema, array) = unsafe { (schema_ptr.as_ref(), FFI_ArrowArray::from_raw(array_ptr.as_ptr())) };
    // SAFETY: `array` and `schema` come from the same producer call, so they describe each other.
    let data = unsafe { arrow_array::ffi::from_ffi(array, schema) }.map_err(arrow_error)?;
    let field = Field::try_from(schema).map_err(arrow_error)?;
    Ok((make_array(data), field))
}

/// Anything that speaks the Arrow PyCapsule interface as a record batch or a stream of them
/// (pyarrow, polars, pandas, DuckDB, ...).
pub enum AnyRecordBatch {
    RecordBatch(RecordBatch),
    Stream(ArrowArrayStreamReader),
}

impl<'py> FromPyObject<'_, 'py> for AnyRecordBatch {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        let py = obj.py();
        if obj.hasattr(intern!(py, "__arrow_c_array__"))? {
            let (schema, array) = array_capsules(&obj)?;
            let (array, field) = import_array(&schema, &array)?;
            let DataType::Struct(fields) = field.data_type() else {
                return Err(PyValueError::new_err(format!(
                    "expected a record batch (a struct array), got an array of {}",
                    field.data_type()
                )));
            };
            let columns = array.as_any().downcast_ref::<StructArray>().expect("a struct array").clone();
            if columns.null_count() != 0 {
                return Err(PyValueError::new_err("a record batch cannot have null rows"));
            }
            let schema = Arc::new(Schema::new(fields.clone()).with_metadata(field.metadata().clone()));
            let options = RecordBatchOptions::new().with_row_count(Some(columns.len()));
            let (_, arrays, _) = columns.into_parts();
            let batch = RecordBatch::try_new_with_options(schema, arrays, &options).map_err(arrow_error)?;
            Ok(Self::RecordBatch(batch))
        } else if obj.hasattr(intern!(py, "__arrow_c_stream__"))? {
            let capsule = obj.call_method0(intern!(py, "__arrow_c_stream__"))?.cast_into::<PyCapsule>()?;
            let stream_ptr = capsule.pointer_checked(Some(STREAM))?.cast::<FFI_ArrowArrayStream>();
            // SAFETY: a capsule named "arrow_array_stream" holds a live `ArrowArrayStream` (checked
            // above); it is moved out, leaving a released struct for the capsule's destructor.
            let stream = unsafe { FFI_ArrowArrayStream::from_raw(stream_ptr.as_ptr()) };
            Ok(Self::Stream(ArrowArrayStreamReader::try_new(stream).map_err(arrow_error)?))
        } else {
            Err(PyValueError::new_err(
                "expected Arrow data: an object with __arrow_c_array__ or __arrow_c_stream__ (a pyarrow \
                 Table or RecordBatch, a polars DataFrame, ...)",
            ))
        }
    }
}

/// Every batch of a stream, read into memory, with their schema.
pub struct Table(Vec<RecordBatch>, SchemaRef);

impl Table {
    pub fn into_inner(self) -> (Vec<RecordBatch>, SchemaRef) {
        (self.0, self.1)
    }
}

impl AnyRecordBatch {
    /// The batches one at a time.
    pub fn into_reader(self) -> PyResult<Box<dyn RecordBatchReader + Send>> {
        Ok(match self {
            Self::RecordBatch(batch) => {
                let schema = batch.schema();
                Box::new(RecordBatchIterator::new(vec![Ok(batch)], schema))
            }
            Self::Stream(stream) => Box::new(stream),
        })
    }

    /// Every batch, read into memory.
    pub fn into_table(self) -> PyResult<Table> {
        let reader = self.into_reader()?;
        let schema = reader.schema();
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(arrow_error)?;
        Ok(Table(batches, schema))
    }
}

/// One Arrow array (an argument that speaks `__arrow_c_array__`, or a result for Python).
pub struct PyArray(ArrayRef, FieldRef);

impl<'py> FromPyObject<'_, 'py> for PyArray {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        if !obj.hasattr(intern!(obj.py(), "__arrow_c_array__"))? {
            return Err(PyValueError::new_err("expected an Arrow array (an object with __arrow_c_array__)"));
        }
        let (schema, array) = array_capsules(&obj)?;
        let (array, field) = import_array(&schema, &array)?;
        Ok(PyArray(array, Arc::new(field)))
    }
}

/// The capsules of `__arrow_c_array__` for `array` described by `field`.
fn export<'py>(
    py: Python<'py>,
    field: &Field,
    array: &dyn Array,
) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
    let schema = FFI_ArrowSchema::try_from(field).map_err(arrow_error)?;
    let array = FFI_ArrowArray::new(&array.to_data());
    // The capsules own the structs: a consumer moves their contents out (leaving them released),
    // and dropping a struct that was never consumed releases it.
    Ok((PyCapsule::new_with_value(py, schema, SCHEMA)?, PyCapsule::new_with_value(py, array, ARRAY)?))
}

impl PyArray {
    pub fn from_array_ref(array: ArrayRef) -> Self {
        let field = Arc::new(Field::new("", array.data_type().clone(), true));
        PyArray(array, field)
    }

    pub fn into_inner(self) -> (ArrayRef, FieldRef) {
        (self.0, self.1)
    }

    /// The array as a `pyarrow.Array`.
    pub fn to_pyarrow<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (schema, array) = export(py, &self.1, self.0.as_ref())?;
        let class = py.import(intern!(py, "pyarrow"))?.getattr(intern!(py, "Array"))?;
        class.call_method1(intern!(py, "_import_from_c_capsule"), (schema, array))
    }
}

/// A record batch on its way to Python.
pub struct PyRecordBatch(RecordBatch);

impl PyRecordBatch {
    pub fn new(batch: RecordBatch) -> Self {
        PyRecordBatch(batch)
    }

    /// The batch as a `pyarrow.RecordBatch`.
    pub fn into_pyarrow(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        let schema = self.0.schema();
        let field = Field::new_struct("", schema.fields().clone(), false).with_metadata(schema.metadata().clone());
        let (schema, array) = export(py, &field, &StructArray::from(self.0))?;
        let class = py.import(intern!(py, "pyarrow"))?.getattr(intern!(py, "RecordBatch"))?;
        class.call_method1(intern!(py, "_import_from_c_capsule"), (schema, array))
    }
}
