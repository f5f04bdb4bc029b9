using System.Data.Common;
using System.Text.Json;
using Lamina.Server.Storage;
using Item = System.Collections.Generic.Dictionary<string, Lamina.Server.DynamoDb.AttributeValue>;

namespace Lamina.Server.DynamoDb;

/// <summary>A stored row as a read returns it: its key, its item's JSON and its size.</summary>
internal readonly record struct ItemRow(ItemKey Key, byte[] Json, int Size, byte[]? IndexPk = null, byte[]? IndexSk = null)
{
    public Item Item => AttributeValue.Deserialize(Json);
}

/// <summary>Bounds on the sort key of a Query (encoded): each may be absent, inclusive or exclusive.</summary>
internal readonly record struct SortRange(byte[]? Low, bool LowInclusive, byte[]? High, bool HighInclusive);

internal sealed partial class DynamoStore
{
    // ---- inside the writer ----

    /// <summary>The current item at <paramref name="key"/>, as this transaction sees it.</summary>
    public static Item? Get(WriteContext context, TableInfo table, ItemKey key)
    {
        context.Lock(table.Id);
        using var reader = context.Read("SELECT item FROM items WHERE table_id = $1 AND seg = $2 AND pk = $3 AND sk = $4;", table.Id, key.Segment, key.Pk, key.Sk);
        return reader.Read() ? AttributeValue.Deserialize((byte[])reader[0]) : null;
    }

    /// <summary>Writes <paramref name="item"/> over <paramref name="old"/> (null: a new item): the row, its index entries, its stream record.</summary>
    public static void Put(WriteContext context, TableInfo table, ItemKey key, Item item, Item? old)
    {
        CheckCurrent(context, table);
        var json = AttributeValue.Serialize(item);
        context.Run("""
            INSERT INTO items (table_id, seg, pk, sk, item, size, expires) VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (table_id, seg, pk, sk) DO UPDATE SET item = excluded.item, size = excluded.size, expires = excluded.expires;
            """, table.Id, key.Segment, key.Pk, key.Sk, json, AttributeValue.ItemSize(item), ExpiryOf(table, item));
        foreach (var index in table.Indexes)
        {
            var before = old is null ? null : IndexKeyOf(index, old);
            var after = IndexKeyOf(index, item);
            if (before is { } b && after is { } a && b.Pk.AsSpan().SequenceEqual(a.Pk) && b.Sk.AsSpan().SequenceEqual(a.Sk))
            {
                continue;
            }
            if (before is { } removed)
            {
                DeleteIndexEntry(context, table, index, key, removed);
            }
            if (after is not null)
            {
                InsertIndexEntry(context, table, index, key, item);
            }
        }
        if (old is null || !AttributeValue.ItemsEqual(old, item))
        {
            AppendStreamRecord(context, table, old is null ? "INSERT" : "MODIFY", item, old, item, service: false);
        }
    }

    /// <summary>Deletes the item at <paramref name="key"/> (<paramref name="old"/>, which exists); <paramref name="service"/>: by TTL.</summary>
    public static void Delete(WriteContext context, TableInfo table, ItemKey key, Item old, bool service = false)
    {
        CheckCurrent(context, table);
        Run(context, "DELETE FROM items WHERE table_id = $1 AND seg = $2 AND pk = $3 AND sk = $4;", table.Id, key.Segment, key.Pk, key.Sk);
        foreach (var index in table.Indexes)
        {
            if (IndexKeyOf(index, old) is { } entry)
            {
                DeleteIndexEntry(context, table, index, key, entry);
            }
        }
        AppendStreamRecord(context, table, "REMOVE", old, old, null, service);
    }

    /// <summary>
    /// A write racing a DeleteTable (or a re-creation of the name) must not land in a table that is gone. On a cluster
    /// the write holds the table's lock, under which it read the definition (<see cref="WriteContext.Current"/>).
    /// </summary>
    private static void CheckCurrent(WriteContext context, TableInfo table)
    {
        if (context.Store.IsPostgres)
        {
            context.Lock(table.Id);
            return;
        }
        context.Store.Current(table);
    }

    private static (byte[] Pk, byte[] Sk)? IndexKeyOf(IndexInfo index, IReadOnlyDictionary<string, AttributeValue> item)
    {
        if (!item.TryGetValue(index.Hash.Name, out var hash) || hash.Kind != index.Hash.Type)
        {
            return null;
        }
        byte[] sk = [];
        if (index.Range is { } range)
        {
            if (!item.TryGetValue(range.Name, out var rangeValue) || rangeValue.Kind != range.Type)
            {
                return null;
            }
            sk = ItemKey.Encode(rangeValue);
        }
        return (ItemKey.Encode(hash), sk);
    }

    private static void InsertIndexEntry(WriteContext context, TableInfo table, IndexInfo index, ItemKey key, IReadOnlyDictionary<string, AttributeValue> item)
    {
        if (IndexKeyOf(index, item) is not { } entry)
        {
            return;
        }
        // Every column is the key: an entry already there is this one.
        Run(context, "INSERT INTO index_entries (table_id, idx, ipk, isk, seg, pk, sk) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING;",
            table.Id, index.Name, entry.Pk, entry.Sk, key.Segment, key.Pk, key.Sk);
    }

    private static void DeleteIndexEntry(WriteContext context, TableInfo table, IndexInfo index, ItemKey key, (byte[] Pk, byte[] Sk) entry) =>
        Run(context, "DELETE FROM index_entries WHERE table_id = $1 AND idx = $2 AND ipk = $3 AND isk = $4 AND seg = $5 AND pk = $6 AND sk = $7;",
            table.Id, index.Name, entry.Pk, entry.Sk, key.Segment, key.Pk, key.Sk);

    /// <summary>The TTL expiry (epoch seconds) of an item: its TTL attribute when that is a number; else none.</summary>
    private static long? ExpiryOf(TableInfo table, Item item) =>
        table.TtlAttribute is { } name && item.TryGetValue(name, out var value) && value.Kind == AttributeKind.N ? value.Number.TruncatedInt64() : null;

    // ---- reads ----

    public static ItemRow? ReadItem(DbConnection connection, TableInfo table, ItemKey key)
    {
        using var select = Sql.Positional(connection, "SELECT item, size FROM items WHERE table_id = $1 AND seg = $2 AND pk = $3 AND sk = $4;",
            table.Id, key.Segment, key.Pk, key.Sk);
        using var reader = select.ExecuteReader();
        return reader.Read() ? new ItemRow(key, (byte[])reader[0], (int)reader.GetInt64(1)) : null;
    }

    /// <summary>
    /// The items of one partition in sort-key order (<paramref name="forward"/>) within <paramref name="range"/>,
    /// after <paramref name="startSk"/> when paging. Rows are read lazily: the caller stops at its limits.
    /// </summary>
    public static IEnumerable<ItemRow> QueryTable(DbConnection connection, TableInfo table, byte[] pk, SortRange range, bool forward, byte[]? startSk)
    {
        var segment = ItemKey.SegmentOf(pk);
        List<object?> values = [table.Id, segment, pk];
        var sql = new System.Text.StringBuilder("SELECT sk, item, size FROM items WHERE table_id = $1 AND seg = $2 AND pk = $3");
        AddRange(values, sql, "sk", range);
        if (startSk is not null)
        {
            sql.Append(forward ? " AND sk > " : " AND sk < ").Append(Next(values, startSk));
        }
        sql.Append(forward ? " ORDER BY sk ASC;" : " ORDER BY sk DESC;");
        using var select = Sql.Positional(connection, sql.ToString(), [.. values]);
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            yield return new ItemRow(new ItemKey(segment, pk, (byte[])reader[0]), (byte[])reader[1], (int)reader.GetInt64(2));
        }
    }

    /// <summary>An index's entries for one index partition, in index sort-key order, joined to their items.</summary>
    public static IEnumerable<ItemRow> QueryIndex(DbConnection connection, TableInfo table, IndexInfo index, byte[] ipk, SortRange range, bool forward,
        (byte[] Isk, ItemKey Key)? start)
    {
        List<object?> values = [table.Id, index.Name, ipk];
        var sql = new System.Text.StringBuilder("""
            SELECT e.isk, e.seg, e.pk, e.sk, i.item, i.size FROM index_entries e
            JOIN items i ON i.table_id = e.table_id AND i.seg = e.seg AND i.pk = e.pk AND i.sk = e.sk
            WHERE e.table_id = $1 AND e.idx = $2 AND e.ipk = $3
            """);
        AddRange(values, sql, "e.isk", range);
        if (start is { } s)
        {
            sql.Append(forward ? " AND (e.isk, e.seg, e.pk, e.sk) > (" : " AND (e.isk, e.seg, e.pk, e.sk) < (")
                .Append(Next(values, s.Isk)).Append(", ").Append(Next(values, s.Key.Segment)).Append(", ")
                .Append(Next(values, s.Key.Pk)).Append(", ").Append(Next(values, s.Key.Sk)).Append(')');
        }
        sql.Append(forward ? " ORDER BY e.isk, e.seg, e.pk, e.sk;" : " ORDER BY e.isk DESC, e.seg DESC, e.pk DESC, e.sk DESC;");
        using var select = Sql.Positional(connection, sql.ToString(), [.. values]);
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            yield return new ItemRow(new ItemKey((int)reader.GetInt64(1), (byte[])reader[2], (byte[])reader[3]), (byte[])reader[4], (int)reader.GetInt64(5), ipk, (byte[])reader[0]);
        }
    }

    /// <summary>A table's items in Scan order (by segment hash, then key), segments <paramref name="fromSegment"/> to <paramref name="toSegment"/>.</summary>
    public static IEnumerable<ItemRow> ScanTable(DbConnection connection, TableInfo table, int fromSegment, int toSegment, ItemKey? start)
    {
        // After a start key the range begins at the key itself ("seg >= from" beside it would make the engines seek to the
        // segment and read every item before the key: each page of a paginated Scan rereading all before it).
        var after = start is { } s && s.Segment >= fromSegment;
        var sql = after
            ? "SELECT seg, pk, sk, item, size FROM items WHERE table_id = $1 AND (seg, pk, sk) > ($3, $4, $5) AND seg <= $2"
            : "SELECT seg, pk, sk, item, size FROM items WHERE table_id = $1 AND seg BETWEEN $3 AND $2";
        object?[] values = after ? [table.Id, toSegment, start!.Value.Segment, start.Value.Pk, start.Value.Sk] : [table.Id, toSegment, fromSegment];
        using var select = Sql.Positional(connection, sql + " ORDER BY seg, pk, sk;", values);
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            yield return new ItemRow(new ItemKey((int)reader.GetInt64(0), (byte[])reader[1], (byte[])reader[2]), (byte[])reader[3], (int)reader.GetInt64(4));
        }
    }

    /// <summary>An index's items in index order; Scan segments over an index split by the item's segment.</summary>
    public static IEnumerable<ItemRow> ScanIndex(DbConnection connection, TableInfo table, IndexInfo index, int fromSegment, int toSegment,
        (byte[] Ipk, byte[] Isk, ItemKey Key)? start)
    {
        var sql = """
            SELECT e.ipk, e.isk, e.seg, e.pk, e.sk, i.item, i.size FROM index_entries e
            JOIN items i ON i.table_id = e.table_id AND i.seg = e.seg AND i.pk = e.pk AND i.sk = e.sk
            WHERE e.table_id = $1 AND e.idx = $2 AND e.seg BETWEEN $3 AND $4
            """;
        object?[] values = start is { } s
            ? [table.Id, index.Name, fromSegment, toSegment, s.Ipk, s.Isk, s.Key.Segment, s.Key.Pk, s.Key.Sk]
            : [table.Id, index.Name, fromSegment, toSegment];
        if (start is not null)
        {
            sql += " AND (e.ipk, e.isk, e.seg, e.pk, e.sk) > ($5, $6, $7, $8, $9)";
        }
        using var select = Sql.Positional(connection, sql + " ORDER BY e.ipk, e.isk, e.seg, e.pk, e.sk;", values);
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            yield return new ItemRow(new ItemKey((int)reader.GetInt64(2), (byte[])reader[3], (byte[])reader[4]), (byte[])reader[5], (int)reader.GetInt64(6),
                (byte[])reader[0], (byte[])reader[1]);
        }
    }

    private static void AddRange(List<object?> values, System.Text.StringBuilder sql, string column, SortRange range)
    {
        if (range.Low is { } low)
        {
            sql.Append(range.LowInclusive ? $" AND {column} >= " : $" AND {column} > ").Append(Next(values, low));
        }
        if (range.High is { } high)
        {
            sql.Append(range.HighInclusive ? $" AND {column} <= " : $" AND {column} < ").Append(Next(values, high));
        }
    }

    /// <summary>Adds a value to a statement's positional values; its placeholder (<c>$n</c>).</summary>
    private static string Next(List<object?> values, object? value)
    {
        values.Add(value);
        return "$" + values.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    // ---- stream records ----

    private static void AppendStreamRecord(WriteContext context, TableInfo table, string eventName, Item keySource,
        Item? oldImage, Item? newImage, bool service)
    {
        if (table.Stream is not { } stream)
        {
            return;
        }
        var keys = ItemKey.KeyOf(table, keySource);
        var withNew = stream.ViewType is "NEW_IMAGE" or "NEW_AND_OLD_IMAGES" && newImage is not null;
        var withOld = stream.ViewType is "OLD_IMAGE" or "NEW_AND_OLD_IMAGES" && oldImage is not null;
        var size = AttributeValue.ItemSize(keys) + (withNew ? AttributeValue.ItemSize(newImage!) : 0) + (withOld ? AttributeValue.ItemSize(oldImage!) : 0);
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("ApproximateCreationDateTime", context.NowMs / 1000);
            w.WritePropertyName("Keys");
            AttributeValue.WriteMap(w, keys);
            if (withNew)
            {
                w.WritePropertyName("NewImage");
                AttributeValue.WriteMap(w, newImage!);
            }
            if (withOld)
            {
                w.WritePropertyName("OldImage");
                AttributeValue.WriteMap(w, oldImage!);
            }
            w.WriteNumber("SizeBytes", size);
            w.WriteString("StreamViewType", stream.ViewType);
            w.WriteEndObject();
        }
        Run(context, "INSERT INTO stream_records (stream_id, created_ms, event_name, service, body) VALUES ($1, $2, $3, $4, $5);",
            stream.Id, context.NowMs, eventName, service ? 1 : 0, buffer.WrittenSpan.ToArray());
        context.StreamWritten = true;
    }
}
