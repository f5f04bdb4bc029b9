using Microsoft.Data.Sqlite;

namespace Lamina.Server.Storage;

/// <summary>
/// Statements with positional parameters (<c>$1</c>, <c>$2</c>, …) bound in order, a null value as SQL NULL: the
/// short form the services' stores write their SQL in.
/// </summary>
internal static class SqliteStatements
{
    /// <summary>A command for <paramref name="sql"/> with <paramref name="values"/> bound to <c>$1</c>…<c>$n</c>; the caller disposes it.</summary>
    public static SqliteCommand Command(SqliteConnection connection, string sql, params object?[] values)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        for (var i = 0; i < values.Length; i++)
        {
            command.Parameters.AddWithValue($"${i + 1}", values[i] ?? DBNull.Value);
        }
        return command;
    }

    /// <summary>Runs <paramref name="sql"/> with its values; the number of rows it changed.</summary>
    public static int Run(SqliteConnection connection, string sql, params object?[] values)
    {
        using var command = Command(connection, sql, values);
        return command.ExecuteNonQuery();
    }
}
