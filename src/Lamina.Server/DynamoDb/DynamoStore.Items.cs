using System.Text.Json;
using Microsoft.Data.Sqlite;
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
        var select = context.Command("SELECT item FROM items WHERE table_id = $1 AND seg = $2 AND pk = $3 AND sk = $4;");
        Bind(select, table.Id, key.Segment, key.Pk, key.Sk);
        using var reader = select.ExecuteReader();
        return reader.Read() ? AttributeValue.Deserialize((byte[])reader[0]) : null;
    }

    /// <summary>Writes <paramref name="item"/> over <paramref name="old"/> (null: a new item): the row, its index entries, its stream record.</summary>
    public static void Put(WriteContext context, TableInfo table, ItemKey key, Item item, Item? old)
    {
        CheckCurrent(context, table);
        var json = AttributeValue.Serialize(item);
        var upsert = context.Command("""
            INSERT INTO items (table_id, seg, pk, sk, item, size, expires) VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (table_id, seg, pk, sk) DO UPDATE SET item = excluded.item, size = excluded.size, expires = excluded.expires;
            """);
        Bind(upsert, table.Id, key.Segment, key.Pk, key.Sk, json, AttributeValue.ItemSize(item), ExpiryOf(table, item));
        upsert.ExecuteNonQuery();
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

    /// <summary>A write racing a DeleteTable (or a re-creation of the name) must not land in a table that is gone.</summary>
    private static void CheckCurrent(WriteContext context, TableInfo table) => context.Store.Current(table);

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
        Run(context, "INSERT OR REPLACE INTO index_entries (table_id, idx, ipk, isk, seg, pk, sk) VALUES ($1, $2, $3, $4, $5, $6, $7);",
            table.Id, index.Name, entry.Pk, entry.Sk, key.Segment, key.Pk, key.Sk);
    }

    private static void DeleteIndexEntry(WriteContext context, TableInfo table, IndexInfo index, ItemKey key, (byte[] Pk, byte[] Sk) entry) =>
        Run(context, "DELETE FROM index_entries WHERE table_id = $1 AND idx = $2 AND ipk = $3 AND isk = $4 AND seg = $5 AND pk = $6 AND sk = $7;",
            table.Id, index.Name, entry.Pk, entry.Sk, key.Segment, key.Pk, key.Sk);

    /// <summary>The TTL expiry (epoch seconds) of an item: its TTL attribute when that is a number; else none.</summary>
    private static long? ExpiryOf(TableInfo table, Item item) =>
        table.TtlAttribute is { } name && item.TryGetValue(name, out var value) && value.Kind == AttributeKind.N ? value.Number.TruncatedInt64() : null;

    // ---- reads ----

    public static ItemRow? ReadItem(SqliteConnection connection, TableInfo table, ItemKey key)
    {
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT item, size FROM items WHERE table_id = $1 AND seg = $2 AND pk = $3 AND sk = $4;";
        select.Parameters.AddWithValue("$1", table.Id);
        select.Parameters.AddWithValue("$2", key.Segment);
        select.Parameters.AddWithValue("$3", key.Pk);
        select.Parameters.AddWithValue("$4", key.Sk);
        using var reader = select.ExecuteReader();
        return reader.Read() ? new ItemRow(key, (byte[])reader[0], reader.GetInt32(1)) : null;
    }

    /// <summary>
    /// The items of one partition in sort-key order (<paramref name="forward"/>) within <paramref name="range"/>,
    /// after <paramref name="startSk"/> when paging. Rows are read lazily: the caller stops at its limits.
    /// </summary>
    public static IEnumerable<ItemRow> QueryTable(SqliteConnection connection, TableInfo table, byte[] pk, SortRange range, bool forward, byte[]? startSk)
    {
        using var select = connection.CreateCommand();
        var sql = new System.Text.StringBuilder("SELECT sk, item, size FROM items WHERE table_id = $t AND seg = $seg AND pk = $pk");
        AddRange(select, sql, "sk", range);
        if (startSk is not null)
        {
            sql.Append(forward ? " AND sk > $start" : " AND sk < $start");
            select.Parameters.AddWithValue("$start", startSk);
        }
        sql.Append(forward ? " ORDER BY sk ASC;" : " ORDER BY sk DESC;");
        select.CommandText = sql.ToString();
        var segment = ItemKey.SegmentOf(pk);
        select.Parameters.AddWithValue("$t", table.Id);
        select.Parameters.AddWithValue("$seg", segment);
        select.Parameters.AddWithValue("$pk", pk);
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            yield return new ItemRow(new ItemKey(segment, pk, (byte[])reader[0]), (byte[])reader[1], reader.GetInt32(2));
        }
    }

    /// <summary>An index's entries for one index partition, in index sort-key order, joined to their items.</summary>
    public static IEnumerable<ItemRow> QueryIndex(SqliteConnection connection, TableInfo table, IndexInfo index, byte[] ipk, SortRange range, bool forward,
        (byte[] Isk, ItemKey Key)? start)
    {
        using var select = connection.CreateCommand();
        var sql = new System.Text.StringBuilder("""
            SELECT e.isk, e.seg, e.pk, e.sk, i.item, i.size FROM index_entries e
            JOIN items i ON i.table_id = e.table_id AND i.seg = e.seg AND i.pk = e.pk AND i.sk = e.sk
            WHERE e.table_id = $t AND e.idx = $idx AND e.ipk = $ipk
            """);
        AddRange(select, sql, "e.isk", range);
        if (start is { } s)
        {
            sql.Append(forward ? " AND (e.isk, e.seg, e.pk, e.sk) > ($a, $b, $c, $d)" : " AND (e.isk, e.seg, e.pk, e.sk) < ($a, $b, $c, $d)");
            select.Parameters.AddWithValue("$a", s.Isk);
            select.Parameters.AddWithValue("$b", s.Key.Segment);
            select.Parameters.AddWithValue("$c", s.Key.Pk);
            select.Parameters.AddWithValue("$d", s.Key.Sk);
        }
        sql.Append(forward ? " ORDER BY e.isk, e.seg, e.pk, e.sk;" : " ORDER BY e.isk DESC, e.seg DESC, e.pk DESC, e.sk DESC;");
        select.CommandText = sql.ToString();
        select.Parameters.AddWithValue("$t", table.Id);
        select.Parameters.AddWithValue("$idx", index.Name);
        select.Parameters.AddWithValue("$ipk", ipk);
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            yield return new ItemRow(new ItemKey(reader.GetInt32(1), (byte[])reader[2], (byte[])reader[3]), (byte[])reader[4], reader.GetInt32(5), ipk, (byte[])reader[0]);
        }
    }

    /// <summary>A table's items in Scan order (by segment hash, then key), segments <paramref name="fromSegment"/> to <paramref name="toSegment"/>.</summary>
    public static IEnumerable<ItemRow> ScanTable(SqliteConnection connection, TableInfo table, int fromSegment, int toSegment, ItemKey? start)
    {
        using var select = connection.CreateCommand();
        var sql = "SELECT seg, pk, sk, item, size FROM items WHERE table_id = $t AND seg BETWEEN $from AND $to";
        if (start is { } s)
        {
            sql += " AND (seg, pk, sk) > ($a, $b, $c)";
            select.Parameters.AddWithValue("$a", s.Segment);
            select.Parameters.AddWithValue("$b", s.Pk);
            select.Parameters.AddWithValue("$c", s.Sk);
        }
        select.CommandText = sql + " ORDER BY seg, pk, sk;";
        select.Parameters.AddWithValue("$t", table.Id);
        select.Parameters.AddWithValue("$from", fromSegment);
        select.Parameters.AddWithValue("$to", toSegment);
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            yield return new ItemRow(new ItemKey(reader.GetInt32(0), (byte[])reader[1], (byte[])reader[2]), (byte[])reader[3], reader.GetInt32(4));
        }
    }

    /// <summary>An index's items in index order; Scan segments over an index split by the item's segment.</summary>
    public static IEnumerable<ItemRow> ScanIndex(SqliteConnection connection, TableInfo table, IndexInfo index, int fromSegment, int toSegment,
        (byte[] Ipk, byte[] Isk, ItemKey Key)? start)
    {
        using var select = connection.CreateCommand();
        var sql = """
            SELECT e.ipk, e.isk, e.seg, e.pk, e.sk, i.item, i.size FROM index_entries e
            JOIN items i ON i.table_id = e.table_id AND i.seg = e.seg AND i.pk = e.pk AND i.sk = e.sk
            WHERE e.table_id = $t AND e.idx = $idx AND e.seg BETWEEN $from AND $to
            """;
        if (start is { } s)
        {
            sql += " AND (e.ipk, e.isk, e.seg, e.pk, e.sk) > ($a, $b, $c, $d, $e)";
            select.Parameters.AddWithValue("$a", s.Ipk);
            select.Parameters.AddWithValue("$b", s.Isk);
            select.Parameters.AddWithValue("$c", s.Key.Segment);
            select.Parameters.AddWithValue("$d", s.Key.Pk);
            select.Parameters.AddWithValue("$e", s.Key.Sk);
        }
        select.CommandText = sql + " ORDER BY e.ipk, e.isk, e.seg, e.pk, e.sk;";
        select.Parameters.AddWithValue("$t", table.Id);
        select.Parameters.AddWithValue("$idx", index.Name);
        select.Parameters.AddWithValue("$from", fromSegment);
        select.Parameters.AddWithValue("$to", toSegment);
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            yield return new ItemRow(new ItemKey(reader.GetInt32(2), (byte[])reader[3], (byte[])reader[4]), (byte[])reader[5], reader.GetInt32(6),
                (byte[])reader[0], (byte[])reader[1]);
        }
    }

    private static void AddRange(SqliteCommand select, System.Text.StringBuilder sql, string column, SortRange range)
    {
        if (range.Low is { } low)
        {
            sql.Append(range.LowInclusive ? $" AND {column} >= $low" : $" AND {column} > $low");
            select.Parameters.AddWithValue("$low", low);
        }
        if (range.High is { } high)
        {
            sql.Append(range.HighInclusive ? $" AND {column} <= $high" : $" AND {column} < $high");
            select.Parameters.AddWithValue("$high", high);
        }
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
