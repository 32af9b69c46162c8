/*
 * The request kernel's interface (compiler/request_kernel.c): included by the kernel and by
 * compiler/request_driver.c, and read as it is by cffi's cdef in compiler/request_kernel.py,
 * so declarations only, no preprocessor lines. Buffers are void* so that cffi passes any
 * buffer (a numpy array, the bytes of a packed RecoSession) without a type conversion.
 */

/* The catalog as handed over at load. Index i in [0, n_products) is a product; -1 is "no
 * product" and reads entry n_products of each table: NaN code, price and popularity, zero
 * affinity (the padding of reco.ProductTables). The affinity is reco.SparseAffinity's CSR:
 * row r's related products are affinity_related[affinity_indptr[r] .. affinity_indptr[r + 1]),
 * in increasing order, with their strengths; a pair not stored has strength 0. */
typedef struct {
  int64_t n_products;
  const float* category_code;       /* n_products + 1 */
  const float* price;               /* n_products + 1 */
  const float* popularity;          /* n_products + 1 */
  const int64_t* affinity_indptr;   /* n_products + 2, row n_products (no product) empty */
  const int32_t* affinity_related;  /* affinity_indptr[n_products + 1] entries */
  const float* affinity_strength;   /* as many */
  /* The sequence feature set's tables (reco.SequenceTables; NULL/0 for a candidate kernel):
   * each product's subcategory and category code (entry n_products, index -1: the spare
   * codes n_subcategories and n_categories), and the subcategory affinity S. */
  const int64_t* subcategory;         /* n_products + 1, codes in [0, n_subcategories] */
  const int64_t* category;            /* n_products + 1 */
  int64_t n_subcategories;
  const double* subcategory_affinity; /* (n_subcategories + 1)^2, row-major */
} RecoProductTables;

/* One session (112 bytes, Python's struct format "<10d4q"): training.features.SessionInputs'
 * 10 numeric fields in order (NaN = missing; rounded to float32 by the kernel), then the
 * catalog indices of the current and the 3 previous products (-1 = none). */
typedef struct {
  double inputs[10];
  int64_t current_index;
  int64_t previous_index[3];
} RecoSession;

/* One session's view history for a sequence kernel (reco.Histories of one session), packed as
 * Python's struct format "<qdq" + n "q" + n "d": n >= 1 entries (an empty history is one entry
 * of index -1 and weight 0, as Histories pads it), the decayed total, the landing product's
 * catalog index (-1 = none), then the n catalog indices (-1 = not in the catalog) in order of
 * first view and their n decayed weights. */
typedef struct {
  int64_t n;
  double total;
  int64_t landing;
} RecoHistory;

/* The catalog's product ids as handed over at load, for reco_request_lookup: an open-addressing
 * table (linear probing) over the 64-bit FNV-1a hash of each id's UTF-8 bytes. */
typedef struct {
  int64_t n_slots;       /* a power of two, more than n_entries */
  const int64_t* slot;   /* n_slots: an entry, or -1 (empty) */
  const int64_t* offset; /* n_entries + 1: entry e's id is bytes[offset[e], offset[e + 1]) */
  const int64_t* value;  /* n_entries: entry e's catalog index */
  const void* bytes;     /* the entries' ids, concatenated */
} RecoIdTable;

/* The interface version (bumped on any change to this file). */
int32_t reco_request_abi_version(void);
/* The features the rows hold, comma-separated, in row order. */
const char* reco_request_feature_names(void);
/* The session's columns, which lead every row (the candidate's follow). */
int32_t reco_request_session_columns(void);
/* Kernels usable on this CPU: bit 0 portable, bit 1 AVX2. */
int32_t reco_request_kernels(void);

/*
 * Scores one request: the session (a RecoSession), its history (a packed RecoHistory; a
 * sequence kernel needs it, a candidate kernel ignores it: NULL) and n candidates (catalog indices, int32 or
 * int64 by index_width; -1 = unknown, whose category code and price then come from codes and
 * prices: float32 arrays of n, or NULL to read every candidate's from the tables). Writes n
 * float64 probabilities to out. mode: 0 auto (fold from the kernel's threshold on), 1 flat,
 * 2 fold; kernel: 0 portable, 1 AVX2 (one this CPU can run). Returns 0, a negative code (-1 a
 * bad argument, -2 a session or history index out of range, -3 no memory), or 1 + the position of the
 * first candidate whose index is out of range.
 */
int64_t reco_request_score(const RecoProductTables* tables, const void* session,
                           const void* history, int32_t mode, int32_t kernel,
                           const void* candidates, int32_t index_width, int64_t n,
                           const void* codes, const void* prices, void* out);

/* Looks up n product ids, given as their UTF-8 bytes joined by NUL bytes (n_bytes in all), in
 * the table. Writes n int64 catalog indices (-1 = unknown) to out and returns the number of
 * unknown ids, or -1 when the bytes do not split into exactly n ids (an id holding a NUL). */
int64_t reco_request_lookup(const RecoIdTable* table, const void* ids, int64_t n_bytes, int64_t n,
                            void* out);

/* The feature rows reco_request_score scores: n x (its features) float32 into rows. Same
 * codes. */
int64_t reco_request_rows(const RecoProductTables* tables, const void* session,
                          const void* history, const void* candidates, int32_t index_width,
                          int64_t n, const void* codes, const void* prices, void* rows);

/* Scores given feature rows (n_rows x its features float32, NaN = missing) as reco_request_score would:
 * each run of consecutive rows whose session columns are bitwise equal is one session. For
 * parity checks against LightGBM on any rows; mode and kernel as there. */
int64_t reco_request_predict_rows(int32_t mode, int32_t kernel, const void* X, int64_t n_rows,
                                  int32_t n_cols, void* out);
